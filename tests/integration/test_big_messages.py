"""Big messages through the real daemon (shipped defaults: uvloop, a receiver process):
spilled to the spool as they arrive, streamed from it on delivery, byte-identical at
the far end; a client that leaves mid-message leaves no temporary file."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Callable

import pytest

from tests.support.daemon import DaemonHandle, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

HEADER = b"From: a@sender.test\r\nTo: b@example.org\r\nSubject: big\r\nX-Job: big-one\r\n"


def big_message(size: int) -> bytes:
    line = b"0123456789 the quick brown fox jumps over the lazy dog 0123456789\r\n"
    block = line * 40 + b".a line that starts with a period\r\n" + b"..and two\r\n"
    return HEADER + b"\r\n" + block * (size // len(block))


def big_daemon(make_daemon: Callable[..., DaemonHandle], receivers: int = 1) -> DaemonHandle:
    d = make_daemon(receiver_processes=receivers)  # 1 is the shipped default
    d.edit_config('max-message-size = "1M"', 'max-message-size = "20M"')
    d.start()
    return d


def temp_files(d: DaemonHandle) -> list[str]:
    return [name for name in d.spool_files() if name.startswith("tmp.")]


@pytest.mark.parametrize(
    ("chunking", "receivers"),
    [(True, 1), (False, 1), (False, 0)],
    ids=["BDAT", "DATA", "DATA-single-process"],
)
def test_a_big_message_arrives_byte_identical(
    make_daemon: Callable[..., DaemonHandle],
    sink: ScriptedSmtpServer,
    chunking: bool,
    receivers: int,
) -> None:
    if not chunking:
        sink.script = ServerScript(omit_extensions=frozenset({"CHUNKING"}))
    d = big_daemon(make_daemon, receivers)
    message = big_message(5 * 1024 * 1024)
    with smtplib.SMTP(d.host, d.port, timeout=60) as client:
        assert client.sendmail("a@sender.test", ["b@example.org"], message) == {}
    [msg] = sink.wait_for_messages_sync(1, timeout=60)
    assert msg.bdat is chunking
    trace, body = msg.data.split(b"\r\nFrom: a@sender.test\r\n", 1)
    assert trace.startswith(b"Received: from ") and b"\r\n\r\n" not in trace
    assert b"From: a@sender.test\r\n" + body == message.replace(b"X-Job: big-one\r\n", b"")
    wait_until(lambda: d.spool_files() == [], 20, "delivered message removed from the spool")
    assert d.stop() == 0


def leave_in_the_middle(d: DaemonHandle, message: bytes) -> None:
    with socket.create_connection((d.host, d.port), timeout=30) as sock:
        sock.recv(1024)
        sock.sendall(
            b"EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
        )
        sock.sendall(message[: len(message) // 2])
        wait_until(lambda: temp_files(d) != [], 20, "content spilled to the spool")


def test_a_client_that_leaves_mid_message_leaves_no_temp_file(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = big_daemon(make_daemon)
    leave_in_the_middle(d, big_message(4 * 1024 * 1024))
    wait_until(lambda: temp_files(d) == [], 20, "temp file removed")
    assert d.spool_files() == []
    assert sink.messages == []
    assert d.stop() == 0
