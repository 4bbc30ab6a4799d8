"""The real daemon (``outrider run``, uvloop, a receiver process) under fuzzed SMTP sessions.

Each session sends a generated client stream over a real socket, cut into random writes,
then half-closes: the daemon must answer with well-formed replies only and close the
session, its receiver process must survive every session, it must log no traceback, and
mail sent afterwards must still be delivered. Inputs are counted with the fuzz targets
(``make fuzz`` runs many more sessions than the default suite).
"""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Callable

from hypothesis import given

from outrider.smtp.client import ReplyParser
from tests.fuzz.harness import fuzz_target
from tests.fuzz.smtp_streams import REPLY_LINES, cut_points, split, streams
from tests.support.daemon import DaemonHandle, wait_until
from tests.support.smtp_server import ScriptedSmtpServer

SESSION_TIMEOUT = 30.0  # seconds a session may take to be answered and closed


def converse(host: str, port: int, writes: list[bytes]) -> bytes:
    """Send ``writes``, half-close, and read everything until the daemon closes."""
    with socket.create_connection((host, port), timeout=SESSION_TIMEOUT) as sock:
        try:
            for chunk in writes:
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN
            pass  # the daemon closed first (QUIT, 421): what it sent is still readable
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break  # unread input when it closed: a reset after its replies
            if not data:
                break
            received += data
    return received


def test_daemon_survives_fuzzed_sessions_and_keeps_delivering(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    daemon = make_daemon(receiver_processes=1)
    daemon.start()
    receivers = daemon.child_pids()
    assert len(receivers) == 1

    @given(streams, cut_points)
    @fuzz_target(weight=0.25)
    def session(stream: bytes, cuts: list[int]) -> None:
        received = converse(daemon.host, daemon.port, split(stream, cuts))
        assert received.startswith(b"220 "), received[:200]
        assert REPLY_LINES.fullmatch(received), received[-300:]
        ReplyParser(max_line_length=1024, max_lines=64).feed(received)

    session()
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert daemon.child_pids() == receivers, "a receiver process died and was replaced"

    with smtplib.SMTP(daemon.host, daemon.port, timeout=20) as client:
        client.sendmail("a@sender.test", ["after-fuzz@example.org"], b"Subject: ok\r\n\r\nok\r\n")
    wait_until(
        lambda: any("after-fuzz@example.org" in m.rcpts for m in sink.messages),
        timeout=30,
        what="a message sent after the fuzzed sessions delivered",
    )
    log = daemon.log_text()
    assert "Traceback" not in log and " CRITICAL " not in log, log[-3000:]
    assert daemon.stop() == 0
