"""A DSN for a message too big to return: built from its first octets only (never the
whole body), with the same result as from the whole message."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from outrider.config.model import DomainPolicy
from outrider.dsn.builder import MAX_RETURNED_SIZE, RETURNED_HEAD, build_dsn
from outrider.dsn.notices import DELAYED, FAILED
from outrider.dsn.notifier import DsnNotifier
from outrider.intake import Intake, IntakePipeline
from outrider.intake.sink import HeldSink
from outrider.intake.vmta import VmtaTable
from outrider.message.envelope import Envelope, Recipient, Ret
from outrider.spool.disk import DiskSpool
from tests.unit.dsn.test_builder import NOW, envelope, failed

HEADERS = b"From: s@example.com\r\nTo: user@example.org\r\nSubject: big\r\n"
BIG = HEADERS + b"\r\n" + b"body line\r\n" * 50_000
LONG_HEADERS = b"".join(b"X-Field-%06d: %s\r\n" % (i, b"v" * 50) for i in range(3000))
BIG_LONG_HEADERS = LONG_HEADERS + b"\r\n" + b"body\r\n"


@pytest.mark.parametrize("original", [BIG, BIG_LONG_HEADERS], ids=["headers", "long-headers"])
@pytest.mark.parametrize("action", ["failed", "delayed"])
@pytest.mark.parametrize("ret", [None, Ret.FULL, Ret.HDRS])
def test_the_first_octets_give_the_same_notice_as_the_whole(
    original: bytes, action: str, ret: Ret | None
) -> None:
    assert len(original) > MAX_RETURNED_SIZE
    env = envelope(ret=ret)
    whole = build_dsn(env, [failed()], original, reporting_mta="mx.test", now=NOW, action=action)
    head = build_dsn(
        env,
        [failed()],
        original[:RETURNED_HEAD],
        reporting_mta="mx.test",
        now=NOW,
        action=action,
        original_size=len(original),
    )
    assert head == whole
    if action == "failed" and ret is not Ret.HDRS:  # the note names the real size
        assert f"The message ({len(original)} bytes)".encode() in whole


def test_a_partial_original_is_never_returned_as_the_message() -> None:
    small = HEADERS + b"\r\nshort\r\n"
    dsn = build_dsn(
        envelope(ret=Ret.FULL),
        [failed()],
        small[:20],
        reporting_mta="mx.test",
        now=NOW,
        original_size=len(small),
    )
    assert b"message/rfc822" not in dsn and b"text/rfc822-headers" in dsn


class Desk:
    def __init__(self, env: Envelope) -> None:
        self.env = env

    def envelope(self, queue_id: str) -> Envelope | None:
        return self.env

    async def notice_stored(self, queue_id: str, kind: str) -> None:
        return None

    def notice_failed(self, queue_id: str, kind: str) -> None:
        raise AssertionError("the notice failed")

    def submit(self, envelope: Envelope, body: bytes | None) -> None:
        return None


class HeadOnlySpool(DiskSpool):
    """Refuses to load a big body whole."""

    async def load_body(self, queue_id: str) -> bytes:
        raise AssertionError(f"{queue_id} loaded whole")


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[HeadOnlySpool]:
    s = HeadOnlySpool(tmp_path / "spool")
    yield s
    await s.close()


@pytest.mark.parametrize("kind", [FAILED, DELAYED])
async def test_the_notifier_reads_only_the_head_of_a_big_original(
    spool: HeadOnlySpool, kind: str
) -> None:
    env = Envelope("QBIG", "s@example.com", [Recipient("user@example.org")], time.time())
    env.size = len(BIG)
    env.recipients[0].last_reply = "550 5.1.1 no such user"
    await spool.store(env, BIG)
    intake = Intake(
        IntakePipeline([]),
        spool,
        HeldSink(),
        "mx.test",
        VmtaTable(known=frozenset({"default"}), sender_defaults={}),
    )
    notifier = DsnNotifier(
        spool, intake, HeldSink(), Desk(env), policy_for=lambda _: DomainPolicy(), clock=time.time
    )
    dsn = await notifier._build(env, kind, env.recipients, f"QBIG-{kind}")
    assert HEADERS in dsn and b"body line" not in dsn
    assert f"({len(BIG)} bytes)".encode() in dsn or kind != FAILED
