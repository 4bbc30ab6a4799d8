"""The spool's error contract: which SMTP reply each failure carries to the client."""

from __future__ import annotations

import errno

import pytest

from outrider.smtp.replies import LOCAL_ERROR, Reply
from outrider.spool.base import (
    IN_MEMORY_LIMIT,
    INSUFFICIENT_STORAGE,
    CorruptMessageError,
    DuplicateMessageError,
    SpoolClosedError,
    SpoolError,
    SpoolFullError,
    UnknownMessageError,
    error_from_os,
)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_or_quota_is_452_insufficient_storage(code: int) -> None:
    error = error_from_os("store", OSError(code, "no space"))
    assert type(error) is SpoolFullError
    assert error.reply == INSUFFICIENT_STORAGE
    assert (error.reply.code, error.reply.enhanced) == (452, "4.3.1")


def test_a_missing_file_means_the_message_is_unknown() -> None:
    error = error_from_os("read", FileNotFoundError(errno.ENOENT, "gone"))
    assert type(error) is UnknownMessageError
    assert error.reply == LOCAL_ERROR


def test_a_missing_file_on_a_full_disk_is_still_reported_as_full() -> None:
    # The errno decides first: a FileNotFoundError never carries ENOSPC in practice,
    # but the order states that "retry later, storage" wins over "unknown message".
    error = error_from_os("store", FileNotFoundError(errno.ENOSPC, "odd"))
    assert type(error) is SpoolFullError


@pytest.mark.parametrize("code", [errno.EIO, errno.EACCES, errno.EROFS, None])
def test_any_other_os_error_is_a_plain_451_local_error(code: int | None) -> None:
    exc = OSError(code, "boom") if code is not None else OSError("no errno")
    error = error_from_os("store", exc)
    assert type(error) is SpoolError
    assert error.reply == LOCAL_ERROR
    assert (error.reply.code, error.reply.enhanced) == (451, "4.3.0")


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EIO, "I/O error"),
        OSError(errno.ENOSPC, "No space left on device"),
        FileNotFoundError(errno.ENOENT, "No such file or directory"),
    ],
)
def test_every_mapped_error_names_the_action_and_the_os_error(exc: OSError) -> None:
    # The operator reads this in the log: which spool step failed, and why.
    error = error_from_os("directory sync", exc)
    assert str(error) == f"spool directory sync failed: {exc}"


@pytest.mark.parametrize(
    "cls", [SpoolClosedError, DuplicateMessageError, UnknownMessageError, CorruptMessageError]
)
def test_other_spool_errors_default_to_451_local_error(cls: type[SpoolError]) -> None:
    error = cls("x")
    assert isinstance(error, SpoolError)
    assert error.reply == LOCAL_ERROR


def test_an_explicit_reply_overrides_the_default() -> None:
    reply = Reply(552, "5.3.4", "Message too big")
    assert SpoolError("x", reply).reply is reply
    assert SpoolFullError("x", reply).reply is reply
    assert SpoolFullError("x").reply == INSUFFICIENT_STORAGE


def test_bodies_up_to_256_kib_are_held_in_memory() -> None:
    assert IN_MEMORY_LIMIT == 262144
