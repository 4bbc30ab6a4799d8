"""Content collection: in memory while small, spilled (header section kept) once big;
a spilled message is completed and checked on its head exactly as it would be whole,
and its spill file never outlives a refusal."""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outrider.intake import Accepted, Intake, IntakePipeline, Rejected, Verdict
from outrider.intake.content import HEADER_TOO_LARGE, Content, ContentBuffer, header_section_end
from outrider.intake.finish import finish_message
from outrider.intake.sink import HeldSink
from outrider.intake.vmta import VmtaTable
from outrider.spool.spill import SpilledBody, SpillFile
from tests.support.memory_spool import MemorySpool, read_spilled
from tests.unit.intake.support import MAIL, NO, SMTP, Recording


def exists(path: str) -> bool:
    return os.path.exists(path)


LIMIT = 1024
VMTAS = VmtaTable(known=frozenset({"default"}), sender_defaults={})


async def until_empty(directory: Path) -> list[str]:
    """The directory's entries once it is empty (a discard runs in the executor), or
    what is left after 10 s."""
    for _ in range(1000):
        if not os.listdir(directory):
            break
        await asyncio.sleep(0.01)
    return os.listdir(directory)


def spiller(directory: Path | str) -> tuple[list[SpillFile], ContentBuffer]:
    made: list[SpillFile] = []

    def open_spill(head_len: int) -> SpillFile:
        made.append(SpillFile(str(directory), head_len))
        return made[-1]

    return made, ContentBuffer(open_spill, limit=LIMIT)


async def feed(buffer: ContentBuffer, content: bytes, piece: int = 300) -> None:
    for i in range(0, len(content), piece):
        write = buffer.add(content[i : i + piece])
        if write is not None:
            await write


def test_header_section_end() -> None:
    assert header_section_end(b"\r\nbody", 100) == 0
    assert header_section_end(b"A: 1\r\nB: 2\r\n\r\nbody", 100) == 12
    assert header_section_end(b"A: 1\r\nB: 2\r\n\r\nbody", 13) is None  # the empty line is cut
    assert header_section_end(b"A: 1\r\nB: 2\r\n", 100) is None


async def test_small_content_stays_in_memory(tmp_path: Path) -> None:
    made, buffer = spiller(tmp_path)
    piece = b"Subject: s\r\n\r\n" + b"x" * (LIMIT - 100) + b"\r\n"
    assert buffer.add(piece) is None
    content = buffer.take()
    assert content is piece  # one piece: no copy
    assert made == [] and os.listdir(tmp_path) == []
    assert buffer.add(b"a\r\n") is None and buffer.add(b"b\r\n") is None
    assert buffer.take() == b"a\r\nb\r\n"  # the buffer was emptied by take()


async def test_big_content_keeps_its_header_section_and_spills_the_rest(tmp_path: Path) -> None:
    _, buffer = spiller(tmp_path)
    header = b"From: a@b.test\r\nSubject: big\r\n"
    content = header + b"\r\n" + b"".join(b"line %d\r\n" % i for i in range(2000))
    await feed(buffer, content)
    assert buffer.spilled
    body = buffer.take()
    assert isinstance(body, SpilledBody)
    assert body.head == header
    assert body.size == len(content)
    assert body.tail.reserve >= len(header)
    assert read_spilled(body) == content
    assert os.listdir(tmp_path) == []
    assert not buffer.spilled and buffer.take() == b""


async def test_a_header_section_longer_than_the_limit_is_refused(tmp_path: Path) -> None:
    made, buffer = spiller(tmp_path)
    content = b"".join(b"X-Field-%d: value\r\n" % i for i in range(200)) + b"\r\nbody\r\n"
    await feed(buffer, content)
    assert buffer.take() is HEADER_TOO_LARGE
    assert made == [] and os.listdir(tmp_path) == []
    assert buffer.add(b"Subject: next\r\n\r\nx\r\n") is None  # the next message is fine
    assert buffer.take() == b"Subject: next\r\n\r\nx\r\n"


async def test_discard_removes_the_spill_file(tmp_path: Path) -> None:
    made, buffer = spiller(tmp_path)
    await feed(buffer, b"Subject: s\r\n\r\n" + b"y" * 5000)
    [spill] = made
    assert exists(spill.path)
    buffer.discard()
    assert not buffer.spilled
    assert await until_empty(tmp_path) == []


# -- header completion and checks see the same thing, whole or spilled ---------------------

HEADER_NAMES = ("Subject", "X-Job", "X-Virtual-MTA", "Date", "Message-ID", "Received", "To")
fields = st.lists(
    st.tuples(
        st.sampled_from(HEADER_NAMES),
        st.text(st.characters(min_codepoint=32, max_codepoint=0x24F), max_size=30),
    ),
    max_size=8,
)


def as_message(header_fields: list[tuple[str, str]], body: bytes) -> bytes:
    head = b"".join(f"{name}: {value}\r\n".encode() for name, value in header_fields)
    return head + b"\r\n" + body


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    header_fields=fields,
    body=st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"\r\n")),
    trusted=st.booleans(),
    add_missing=st.booleans(),
    vmta_header=st.booleans(),
)
def test_a_spilled_message_is_completed_exactly_as_the_whole_one(
    header_fields: list[tuple[str, str]],
    body: bytes,
    trusted: bool,
    add_missing: bool,
    vmta_header: bool,
) -> None:
    content = as_message(header_fields, body)
    submission = replace(
        SMTP, client_trusted=trusted, add_missing_headers=add_missing, vmta_header=vmta_header
    )
    end = header_section_end(content, len(content) + 1)
    assert end is not None
    with tempfile.TemporaryDirectory() as directory:
        tail = SpillFile(directory, end)
        tail._append(content[end:])
        whole_env, whole = finish_message(
            submission, MAIL, content, queue_id="Q1", hostname="mx.test", now=1e9
        )
        spilled_env, spilled = finish_message(
            submission,
            MAIL,
            SpilledBody(content[:end], tail),
            queue_id="Q1",
            hostname="mx.test",
            now=1e9,
        )
        assert isinstance(spilled, SpilledBody) and spilled.tail is tail
        assert spilled_env == whole_env
        assert read_spilled(spilled) == whole


async def test_submit_checks_the_head_and_stores_a_spilled_message(tmp_path: Path) -> None:
    log: list[str] = []
    seen: list[bytes] = []

    class Head(Recording):
        def at_message(self, submission, envelope, content):  # type: ignore[no-untyped-def]
            seen.append(content)
            return super().at_message(submission, envelope, content)

    spool, held = MemorySpool(), HeldSink()
    intake = Intake(IntakePipeline([Head("h", log)]), spool, held, "mx.test", VMTAS)
    _, buffer = spiller(tmp_path)
    content = b"Subject: big\r\n\r\n" + b"z" * 5000 + b"\xe9\r\n"
    await feed(buffer, content)
    body = buffer.take()
    assert isinstance(body, SpilledBody)
    result = await intake.submit(SMTP, MAIL, body, queue_id="QBIG")
    assert isinstance(result, Accepted)
    assert seen == [b"Subject: big\r\n"]  # the header section, never the body
    stored = spool.bodies["QBIG"]
    assert stored.endswith(content) and stored.startswith(b"Received: ")
    assert result.envelope.size == len(stored)
    assert result.envelope.body_8bit  # the 8-bit octet was in the tail
    assert held.release("QBIG") == (result.envelope, None)  # read from the spool later
    assert os.listdir(tmp_path) == []


async def test_a_refused_spilled_message_leaves_no_file(tmp_path: Path) -> None:
    refusing = Recording("no", [], Verdict.reject(NO))
    intake = Intake(IntakePipeline([refusing]), MemorySpool(), HeldSink(), "mx.test", VMTAS)
    _, buffer = spiller(tmp_path)
    await feed(buffer, b"Subject: big\r\n\r\n" + b"z" * 5000)
    body = buffer.take()
    assert isinstance(body, SpilledBody)
    assert os.listdir(tmp_path) != []
    result = await intake.submit(SMTP, MAIL, body)
    assert result == Rejected(NO)
    assert await until_empty(tmp_path) == []


async def test_a_spilled_message_loses_the_unsubscribe_request_and_may_be_signed(
    tmp_path: Path,
) -> None:
    """The steps after header completion change only the head of a spilled message; the
    envelope's size follows them."""

    class Signer:
        async def apply(self, content: Content, now: float) -> Content:
            assert isinstance(content, SpilledBody)
            return SpilledBody(b"DKIM-Signature: v=1\r\n" + content.head, content.tail)

    tail = b"z" * 5000 + b"\r\n"
    for dkim, first in ((None, b"Received: "), (Signer(), b"DKIM-Signature: v=1\r\n")):
        spool = MemorySpool()
        intake = Intake(IntakePipeline([]), spool, HeldSink(), "mx.test", VMTAS)
        intake.dkim = dkim  # type: ignore[assignment]
        _, buffer = spiller(tmp_path)
        await feed(buffer, b"Subject: big\r\nX-Outrider-Unsubscribe: no\r\n\r\n" + tail)
        body = buffer.take()
        assert isinstance(body, SpilledBody)
        result = await intake.submit(SMTP, MAIL, body, queue_id="QBIG")
        assert isinstance(result, Accepted)
        stored = spool.bodies["QBIG"]
        assert stored.startswith(first) and stored.endswith(b"Subject: big\r\n\r\n" + tail)
        assert b"X-Outrider-Unsubscribe" not in stored
        assert result.envelope.size == len(stored)
