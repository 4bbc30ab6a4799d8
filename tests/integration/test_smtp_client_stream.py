"""The asyncio SMTP client streaming a body from the spool to the scripted server:
byte-identical over DATA (dot-stuffed across chunk boundaries) and BDAT, a damaged
body never ends the message, a peer that stops reading times out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from outrider.delivery.smtp_client import SmtpSession, SmtpTimeouts
from outrider.message.envelope import Envelope, Recipient
from outrider.spool.base import CorruptMessageError
from outrider.spool.codec import PREFIX_SIZE, decode_prefix
from outrider.spool.disk import DiskSpool
from outrider.spool.reader import CHUNK_SIZE, StoredBody
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

FAST = SmtpTimeouts(
    connect=2, greeting=2, ehlo=2, mail=2, rcpt=2, data_init=2, data_block=5, data_done=5,
    rset=2, quit=1, starttls=2,
)  # fmt: skip


def envelope(queue_id: str = "Q1") -> Envelope:
    return Envelope(queue_id, "sender@a.test", [Recipient("a@x.test")], time.time())


def body_with_dots(size: int) -> bytes:
    """Lines starting with a period everywhere, so some straddle chunk boundaries."""
    lines = [b"Subject: streamed\r\n", b"\r\n"]
    total, i = 0, 0
    while total < size:
        line = b"." * (i % 3) + b"line %d\r\n" % i
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines)


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[DiskSpool]:
    s = DiskSpool(tmp_path / "spool")
    yield s
    await s.close()


async def stored(spool: DiskSpool, body: bytes, queue_id: str = "Q1") -> StoredBody:
    await spool.store(envelope(queue_id), body)
    return await spool.open_body(queue_id)


async def connect(server: ScriptedSmtpServer, timeouts: SmtpTimeouts = FAST) -> SmtpSession:
    return await SmtpSession.connect(
        server.host, server.port, helo_name="client.test", timeouts=timeouts
    )


def chunk_boundaries_hit_dots(body: bytes) -> bool:
    """Some chunk starts with a period right after a line end: the hard case."""
    return any(
        body[i : i + 1] == b"." and body[i - 2 : i] == b"\r\n"
        for i in range(CHUNK_SIZE, len(body), CHUNK_SIZE)
    )


@pytest.mark.parametrize("omit", [frozenset({"CHUNKING"}), frozenset()], ids=["DATA", "BDAT"])
async def test_a_streamed_body_arrives_byte_identical(
    spool: DiskSpool, omit: frozenset[str]
) -> None:
    body = body_with_dots(3 * 1024 * 1024)
    handle = await stored(spool, body)
    assert chunk_boundaries_hit_dots(body)
    async with ScriptedSmtpServer(ServerScript(omit_extensions=omit)) as server:
        session = await connect(server)
        result = await session.send(envelope(), [Recipient("a@x.test")], handle)
        assert [str(r.reply) for r in result.results] == ["250 2.0.0 OK queued"]
        again = await session.send(envelope(), [Recipient("b@x.test")], handle)  # reusable
        assert again.results[0].reply.code == 250
        await session.close()
        first, second = server.messages
        assert first.data == body and second.data == body
        assert first.bdat is (not omit)
        assert first.mail_params["SIZE"] == str(len(body))


async def test_a_damaged_body_is_never_ended(spool: DiskSpool) -> None:
    body = body_with_dots(1024 * 1024)
    handle = await stored(spool, body)
    path = spool.directory / "Q1"
    data = bytearray(path.read_bytes())
    data[decode_prefix(bytes(data[:PREFIX_SIZE])).body_offset + 100] ^= 0x01
    path.write_bytes(bytes(data))
    async with ScriptedSmtpServer(ServerScript(omit_extensions=frozenset({"CHUNKING"}))) as server:
        session = await connect(server)
        with pytest.raises(CorruptMessageError):
            await session.send(envelope(), [Recipient("a@x.test")], handle)
        assert not session.usable
        await session.close()
        assert server.messages == []


async def test_a_peer_that_stops_reading_times_out(spool: DiskSpool) -> None:
    handle = await stored(spool, b"x" * (16 * 1024 * 1024))
    timeouts = SmtpTimeouts(data_block=0.3, data_done=30, quit=0.3)
    async with ScriptedSmtpServer(ServerScript(hang_at="body")) as server:
        session = await connect(server, timeouts)
        started = time.monotonic()
        result = await session.send(envelope(), [Recipient("a@x.test")], handle)
        assert time.monotonic() - started < 10
        assert [str(r.reply) for r in result.results] == ["451 4.4.2 Timeout sending message data"]
        await session.close()


@pytest.mark.parametrize("omit", [frozenset({"CHUNKING"}), frozenset()], ids=["DATA", "BDAT"])
async def test_a_drop_mid_stream_gives_451(spool: DiskSpool, omit: frozenset[str]) -> None:
    handle = await stored(spool, body_with_dots(2 * 1024 * 1024))
    async with ScriptedSmtpServer(ServerScript(drop_at="body", omit_extensions=omit)) as server:
        session = await connect(server)
        result = await session.send(envelope(), [Recipient("a@x.test")], handle)
        assert result.connection_lost and result.results[0].reply.code == 451
        await session.close()
        assert server.messages == []
