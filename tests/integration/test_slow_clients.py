"""Slowloris clients and a full listener, in the daemon as it ships (``outrider run``,
a receiver process, uvloop): a client trickling bytes is cut off by the listener's
timeouts, which restart on progress and not on every byte, and strangers filling
``max-connections`` do not lock out a trusted client."""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Callable

from tests.support.daemon import DaemonHandle, free_port

STRANGER = "127.0.0.9"


def _stranger(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.bind((STRANGER, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _trickle_until_closed(sock: socket.socket, data: bytes, limit: float) -> tuple[float, bytes]:
    """Send ``data`` a byte every 0.2 s (repeating it) until the server closes; returns
    the seconds it took and everything the server said."""
    started = time.monotonic()
    said = b""
    sock.settimeout(0.2)
    i = 0
    while time.monotonic() - started < limit:
        try:
            sock.sendall(data[i % len(data) : i % len(data) + 1])
        except OSError:
            break
        i += 1
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        said += chunk
    return time.monotonic() - started, said


def test_trickling_clients_time_out(make_daemon: Callable[..., DaemonHandle]) -> None:
    port = free_port()
    daemon = make_daemon(
        receiver_processes=1,
        extra=f"""
[[listener]]
address = "127.0.0.1:{port}"
role = "submission"
auth = false
relay-networks = ["127.0.0.1/32"]
command-timeout = "2s"
data-timeout = "2s"
""",
    )
    daemon.start()
    # An endless command line, a byte at a time: before, every byte restarted the clock.
    sock = _stranger(port)
    try:
        took, said = _trickle_until_closed(sock, b"X" * 100, limit=20)
    finally:
        sock.close()
    assert took < 8, (took, said)
    assert said.startswith(b"220 ") and b"421 4.4.2" in said

    # A message body trickled a byte at a time.
    sock = _stranger(port)
    try:
        sock.settimeout(10)
        sock.recv(4096)
        sock.sendall(b"EHLO slow.test\r\nMAIL FROM:<a@sender.test>\r\n")
        sock.sendall(b"RCPT TO:<b@example.org>\r\nDATA\r\n")
        answered = b""
        while b"354 " not in answered:
            answered += sock.recv(4096)
        took, said = _trickle_until_closed(sock, b"x\r\n", limit=20)
    finally:
        sock.close()
    assert took < 8, (took, said)
    assert b"421 4.4.2" in said


def test_strangers_filling_the_listener_leave_room_for_a_trusted_client(
    make_daemon: Callable[..., DaemonHandle],
) -> None:
    port = free_port()
    daemon = make_daemon(
        receiver_processes=1,
        extra=f"""
[[listener]]
address = "127.0.0.1:{port}"
relay-networks = ["127.0.0.1/32"]
max-connections = 20
max-connections-per-client = 0
""",
    )
    daemon.start()
    held = [_stranger(port) for _ in range(25)]
    try:
        greetings = [sock.recv(4096)[:3] for sock in held]
        assert greetings.count(b"220") == 20, greetings  # strangers: the limit holds
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:  # trusted: still served
            assert client.noop()[0] == 250
            assert (
                client.sendmail("a@sender.test", ["b@example.org"], b"Subject: x\r\n\r\nx\r\n")
                == {}
            )
    finally:
        for sock in held:
            sock.close()
