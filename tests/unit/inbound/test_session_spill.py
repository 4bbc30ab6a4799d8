"""Big messages through the real session, protocol core, intake and disk spool: content
past 256 KiB is spilled as it arrives and stored byte for byte; a client that leaves,
a refusal mid-stream or a reset leaves no temporary file behind."""

from __future__ import annotations

import ipaddress
import os
import smtplib
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from outrider.inbound.receiver import Listener, open_listening_socket
from outrider.inbound.session import ListenerContext
from outrider.intake import Check, Intake, IntakePipeline, MailEnvelope, Submission, Verdict
from outrider.intake.checks import HopLimit
from outrider.intake.verdict import CONTINUE, VerdictResult
from outrider.intake.vmta import VmtaTable
from outrider.message.envelope import Envelope
from outrider.smtp.replies import Reply
from outrider.smtp.server import ServerConfig
from outrider.spool.base import IN_MEMORY_LIMIT
from outrider.spool.disk import DiskSpool
from tests.support.daemon import wait_until
from tests.support.inbound import in_thread, raw_dialogue, read_all

HOSTNAME = "mta.outrider.test"
HEADER = b"From: a@sender.test\r\nTo: b@relay.test\r\nSubject: big\r\n"
SPAM = Reply(550, "5.7.1", "Looks like spam")


def big_message(size: int = 3 * 1024 * 1024) -> bytes:
    line = b"0123456789 the quick brown fox jumps over the lazy dog 0123456789\r\n"
    dotted = b".a line that starts with a period\r\n"
    body = (line * 30 + dotted) * (size // (len(line) * 30 + len(dotted)))
    return HEADER + b"\r\n" + body


@dataclass
class Handed:
    """The sink: what the intake handed over, per queue id."""

    bodies: dict[str, bytes | None] = field(default_factory=dict)

    def accept(self, envelope: Envelope, body: bytes | None) -> None:
        self.bodies[envelope.queue_id] = body


@dataclass
class SpoolServer:
    listener: Listener
    spool: DiskSpool
    handed: Handed
    heads: list[bytes]

    @property
    def port(self) -> int:
        return int(self.listener.sock.getsockname()[1])

    def temps(self) -> list[str]:
        return [n for n in os.listdir(self.spool.directory) if n.startswith("tmp.")]

    def messages(self) -> list[str]:
        return [n for n in os.listdir(self.spool.directory) if not n.startswith("tmp.")]


class Heads(Check):
    """Records what the message checks are shown; refuses content with ``spam``."""

    def __init__(self, heads: list[bytes]) -> None:
        self.heads = heads

    def at_message(
        self, submission: Submission, envelope: MailEnvelope, content: bytes
    ) -> VerdictResult:
        self.heads.append(content)
        return Verdict.reject(SPAM) if b"spam" in content else CONTINUE


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SpoolServer]:
    made = await start(tmp_path)
    yield made
    await made.listener.stop(1.0)
    await made.spool.close()


async def start(tmp_path: Path, checks: Sequence[Check] = (), **protocol: Any) -> SpoolServer:
    spool = DiskSpool(tmp_path / "spool")
    handed = Handed()
    heads: list[bytes] = []
    counter = iter(range(1, 1_000_000))
    intake = Intake(
        pipeline=IntakePipeline([Heads(heads), HopLimit(30), *checks]),
        spool=spool,
        sink=handed,
        hostname=HOSTNAME,
        vmtas=VmtaTable(known=frozenset({"default"}), sender_defaults={}),
        new_queue_id=lambda: f"Q{next(counter):05d}",
    )
    ctx = ListenerContext(
        name="test",
        protocol_config=replace(ServerConfig(HOSTNAME), **protocol),
        relay_networks=(ipaddress.ip_network("127.0.0.0/8"),),
        intake=intake,
    )
    listener = Listener(ctx, open_listening_socket("127.0.0.1", 0, reuse_port=False))
    await listener.start()
    return SpoolServer(listener, spool, handed, heads)


def send(port: int, message: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        return client.sendmail("a@sender.test", ["b@relay.test"], message)


async def test_a_big_message_is_spilled_and_stored_byte_for_byte(server: SpoolServer) -> None:
    message = big_message()
    assert await in_thread(send, server.port, message) == {}
    [queue_id] = server.messages()
    stored = await server.spool.load_body(queue_id)
    assert stored.startswith(b"Received: from ") and stored.endswith(message)
    assert server.handed.bodies == {queue_id: None}  # too big to hand over inline
    assert server.heads == [HEADER]  # the checks saw the header section only
    assert server.temps() == []


async def test_a_small_message_stays_in_memory(server: SpoolServer) -> None:
    message = HEADER + b"\r\n" + (b"x" * 98 + b"\r\n") * ((IN_MEMORY_LIMIT - 1000) // 100)
    assert await in_thread(send, server.port, message) == {}
    [body] = server.handed.bodies.values()
    assert body is not None and body.endswith(message)
    assert server.heads == [message]


def bdat_dialogue(port: int, message: bytes, chunk: int, *, last: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.recv(1024)
        sock.sendall(b"EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@relay.test>\r\n")
        for i in range(0, len(message), chunk):
            piece = message[i : i + chunk]
            final = last and i + chunk >= len(message)
            sock.sendall(b"BDAT %d%s\r\n" % (len(piece), b" LAST" if final else b"") + piece)
        if not last:
            sock.sendall(b"RSET\r\n")
        sock.sendall(b"QUIT\r\n")
        return read_all(sock, quiet=2.0)


async def test_bdat_chunks_are_spilled_and_stored_byte_for_byte(server: SpoolServer) -> None:
    message = big_message(1024 * 1024)
    out = await in_thread(bdat_dialogue, server.port, message, 100_000)
    assert b"250 2.0.0 OK" in out
    [queue_id] = server.messages()
    assert (await server.spool.load_body(queue_id)).endswith(message)
    assert server.temps() == []


async def test_a_reset_in_the_middle_of_bdat_leaves_no_file(server: SpoolServer) -> None:
    out = await in_thread(bdat_dialogue, server.port, big_message(), 500_000, last=False)
    assert out.count(b"octets received") >= 2
    await in_thread(wait_until, lambda: server.temps() == [], 10, "temp files removed")
    assert server.messages() == []


def leave_in_the_middle(server: SpoolServer, message: bytes) -> None:
    """Send half the message and leave once the server has spilled it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.recv(1024)
        sock.sendall(
            b"EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@relay.test>\r\nDATA\r\n"
        )
        sock.sendall(message[: len(message) // 2])
        wait_until(lambda: server.temps() != [], 10, "content spilled")


async def test_a_client_that_leaves_mid_message_leaves_no_file(server: SpoolServer) -> None:
    await in_thread(leave_in_the_middle, server, big_message())
    await in_thread(wait_until, lambda: not server.listener.ctx.sessions, 10, "session ended")
    await in_thread(wait_until, lambda: server.temps() == [], 10, "temp files removed")
    assert server.messages() == []


def data_dialogue(port: int, content: bytes) -> bytes:
    return raw_dialogue(
        port,
        b"EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@relay.test>\r\nDATA\r\n",
        content + b".\r\nQUIT\r\n",
        timeout=30,
    )


@pytest.mark.parametrize(
    ("tail", "reply"),
    [
        (b"bare\nLF after the spill\r\n", b"554 5.6.0 Message contains bare CR or LF"),
        (b"x" * 2000 + b"\r\n", b"554 5.6.0 Message has a line longer than"),
    ],
)
async def test_a_framing_refusal_after_the_spill_leaves_no_file(
    server: SpoolServer, tail: bytes, reply: bytes
) -> None:
    out = await in_thread(data_dialogue, server.port, big_message(1024 * 1024) + tail)
    assert reply in out
    await in_thread(wait_until, lambda: server.temps() == [], 10, "temp files removed")
    assert server.messages() == []


async def test_the_size_limit_holds_after_the_spill(tmp_path: Path) -> None:
    made = await start(tmp_path, max_message_size=1024 * 1024)
    try:
        message = big_message(1024 * 1024 + 100_000)
        out = await in_thread(data_dialogue, made.port, message)
        assert b"552 5.3.4" in out
        await in_thread(wait_until, lambda: made.temps() == [], 10, "temp files removed")
        assert made.messages() == []
        exact = big_message(900_000)
        assert await in_thread(send, made.port, exact) == {}  # under the limit: stored
        assert len(made.messages()) == 1
    finally:
        await made.listener.stop(1.0)
        await made.spool.close()


async def test_a_refusal_by_a_message_check_leaves_no_file(server: SpoolServer) -> None:
    message = b"Subject: spam\r\n" + big_message()
    with pytest.raises(smtplib.SMTPDataError) as info:
        await in_thread(send, server.port, message)
    assert info.value.smtp_code == 550
    await in_thread(wait_until, lambda: server.temps() == [], 10, "temp files removed")
    assert server.messages() == []


async def test_a_header_section_too_large_to_spill_is_refused(server: SpoolServer) -> None:
    fields = b"".join(b"X-Filler-%06d: %s\r\n" % (i, b"v" * 60) for i in range(4000))
    message = fields + b"\r\n" + b"body\r\n" * 10
    assert len(fields) > IN_MEMORY_LIMIT
    with pytest.raises(smtplib.SMTPDataError) as info:
        await in_thread(send, server.port, message)
    assert (info.value.smtp_code, info.value.smtp_error) == (
        552,
        b"5.3.4 Message header section too large",
    )
    assert server.temps() == [] and server.messages() == []
    assert await in_thread(send, server.port, big_message()) == {}  # the session goes on


async def test_too_many_hops_in_a_spilled_header_section(server: SpoolServer) -> None:
    hops = b"".join(b"Received: from hop%d\r\n" % i for i in range(30))
    with pytest.raises(smtplib.SMTPDataError) as info:
        await in_thread(send, server.port, hops + big_message())
    assert info.value.smtp_code == 554
    await in_thread(wait_until, lambda: server.temps() == [], 10, "temp files removed")
