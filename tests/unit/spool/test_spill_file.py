"""A spill file on its own (spool.spill.SpillFile), without a spool: where it is, what it
keeps about the tail, and how its failures are kept for the store instead of raised."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from outrider.spool import spill as spill_module
from outrider.spool import temps
from outrider.spool.base import SpoolError, SpoolFullError
from outrider.spool.spill import SPILL_ROOM, SPILL_SUFFIX, SpilledBody, SpillFile


def read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def write(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def test_a_spill_file_is_a_temp_file_of_this_process_in_the_directory(tmp_path: Path) -> None:
    first, second = SpillFile(str(tmp_path), 10), SpillFile(str(tmp_path), 10)
    assert os.path.dirname(first.path) == str(tmp_path)
    name = os.path.basename(first.path)
    assert name.startswith(f"{temps.TMP_PREFIX}{os.getpid()}.") and name.endswith(SPILL_SUFFIX)
    assert first.path != second.path
    assert first.reserve == 10 + SPILL_ROOM
    assert SpillFile(str(tmp_path), 10, room=5).reserve == 15
    assert os.listdir(tmp_path) == []  # created by the first write only


async def test_the_tail_is_written_after_the_room_and_counted(tmp_path: Path) -> None:
    spill = SpillFile(str(tmp_path), 4, room=6)
    await spill.write(b"abc")
    await spill.write(b"")  # nothing: no write
    await spill.write(b"de")
    assert (spill.size, spill.error) == (5, None)
    data = read(spill.path)
    assert data == b"\0" * 10 + b"abcde"
    assert stat.S_IMODE(os.stat(spill.path).st_mode) == 0o600
    assert temps.contains(spill.path)  # recovery spares it
    spill.discard()


async def test_an_empty_write_creates_no_file(tmp_path: Path) -> None:
    spill = SpillFile(str(tmp_path), 4)
    await spill.write(b"")
    assert os.listdir(tmp_path) == []
    assert spill.size == 0


async def test_ascii_says_whether_any_tail_octet_is_8bit(tmp_path: Path) -> None:
    spill = SpillFile(str(tmp_path), 4)
    assert spill.ascii is True  # an empty tail
    await spill.write(b"plain text\r\n")
    assert spill.ascii is True
    await spill.write("caf\u00e9\r\n".encode())
    assert spill.ascii is False
    await spill.write(b"plain again\r\n")
    assert spill.ascii is False  # once 8-bit, always
    spill.discard()


async def test_an_existing_file_is_never_written_into(tmp_path: Path) -> None:
    spill = SpillFile(str(tmp_path), 4)
    write(spill.path, b"not ours")
    await spill.write(b"data")
    assert isinstance(spill.error, SpoolError)
    assert read(spill.path) == b"not ours"
    assert not temps.contains(spill.path)  # not this process's to keep


async def test_an_unexpected_failure_is_kept_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(fd: int, data: bytes, offset: int) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(temps, "pwrite_all", broken)
    spill = SpillFile(str(tmp_path), 4)
    with caplog.at_level(logging.ERROR, logger="outrider.spool"):
        await spill.write(b"data")  # never raises
    assert isinstance(spill.error, SpoolError) and "a bug" in str(spill.error)
    assert spill.size == 0
    assert any(spill.path in r.getMessage() for r in caplog.records)
    spill.discard()


async def test_a_write_after_the_executor_shut_down_is_a_failure(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    await loop.shutdown_default_executor()
    spill = SpillFile(str(tmp_path), 4)
    await spill.write(b"data")
    assert isinstance(spill.error, SpoolError)
    assert os.listdir(tmp_path) == []


async def test_a_write_still_queued_when_the_store_takes_the_file_is_dropped(
    tmp_path: Path,
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(1))
    spill = SpillFile(str(tmp_path), 4, room=0)
    await spill.write(b"first")
    release = threading.Event()
    blocker = loop.run_in_executor(None, release.wait, 10)
    late = spill.write(b"late")  # queued behind the blocker
    fd = spill.detach()  # the store takes the file now
    release.set()
    await blocker
    await late
    os.close(fd)
    assert spill.error is None and spill.size == len(b"first")
    assert read(spill.path) == b"\0" * 4 + b"first"
    with pytest.raises(SpoolError):
        spill.detach()  # handed over once
    os.unlink(spill.path)
    temps.discard(spill.path)


async def test_detach_of_an_empty_tail_creates_the_file(tmp_path: Path) -> None:
    spill = SpillFile(str(tmp_path), 4)
    fd = spill.detach()
    try:
        assert os.fstat(fd).st_size == 0
        assert os.listdir(tmp_path) == [os.path.basename(spill.path)]
    finally:
        os.close(fd)
    spill.discard()  # after the hand-over: the store's file, left alone
    await asyncio.sleep(0.05)
    assert os.listdir(tmp_path) == [os.path.basename(spill.path)]
    os.unlink(spill.path)
    temps.discard(spill.path)


async def test_a_failed_removal_is_logged_and_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    spill = SpillFile(str(tmp_path), 4)
    await spill.write(b"data")

    def denied(path: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(spill_module.os, "unlink", denied)
    with caplog.at_level(logging.ERROR, logger="outrider.spool"):
        spill.discard()
        for _ in range(500):  # logged, then forgotten, in the executor
            if caplog.records and not temps.contains(spill.path):
                break
            await asyncio.sleep(0.01)
    assert any(spill.path in r.getMessage() for r in caplog.records)
    assert not temps.contains(spill.path)


def test_discard_without_a_loop_removes_at_once(tmp_path: Path) -> None:
    spill = SpillFile(str(tmp_path), 4)
    asyncio.run(_write(spill, b"data"))
    body = SpilledBody(b"head", spill)
    assert body.size == 4 + 4
    body.discard()
    assert os.listdir(tmp_path) == []
    body.discard()  # idempotent


async def _write(spill: SpillFile, data: bytes) -> None:
    await spill.write(data)


def full(fd: int, data: bytes, offset: int) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


async def test_descriptor_0_is_a_file_like_any_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon may run with standard input closed: the first file it opens then gets
    descriptor 0, which must not be taken for "no file yet"."""
    saved = os.dup(0)
    os.close(0)
    try:
        spill = SpillFile(str(tmp_path), 4, room=0)
        await spill.write(b"first")
        await spill.write(b"second")
        assert spill.error is None and spill.size == len(b"firstsecond")
        fd = spill.detach()
        assert fd == 0  # the case this test is about
        assert os.pread(fd, 100, 0) == b"\0" * 4 + b"firstsecond"
        os.close(fd)
        os.unlink(spill.path)
        temps.discard(spill.path)

        dropped = SpillFile(str(tmp_path), 4)
        await dropped.write(b"data")  # on descriptor 0 again
        dropped.discard()
        for _ in range(500):
            if not os.listdir(tmp_path):
                break
            await asyncio.sleep(0.01)
        assert os.listdir(tmp_path) == []

        failed = SpillFile(str(tmp_path), 4)
        await failed.write(b"data")  # on descriptor 0 again
        monkeypatch.setattr(os, "pwrite", full)
        await failed.write(b"more")
        monkeypatch.undo()
        with pytest.raises(SpoolFullError):
            failed.detach()
        assert os.listdir(tmp_path) == []  # removed, not handed over
    finally:
        os.dup2(saved, 0)
        os.close(saved)
