"""Limits shared by the receiver processes, in the daemon as it ships (``outrider run``
with two receivers sharing the port, on uvloop): one client's parallel AUTH guesses
get no more than ``auth-max-failures`` verified, and its connections are held to
``max-connections-per-client`` however the kernel spreads them over the receivers."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable
from pathlib import Path

from outrider.auth.store import UserStore
from tests.support.daemon import DaemonHandle, free_port

STRANGER = "127.0.0.9"  # not in the listener's relay-networks
USER, PASSWORD = "alice", "correct horse"


def _daemon(
    make_daemon: Callable[..., DaemonHandle], tmp_path: Path, extra: str = ""
) -> tuple[DaemonHandle, int]:
    users = tmp_path / "users"
    UserStore(users).add(USER, PASSWORD, allowed_senders=["alice@sender.test"])
    port = free_port()
    daemon = make_daemon(
        receiver_processes=2,
        extra=f'''
[[listener]]
address = "127.0.0.1:{port}"
role = "submission"
relay-networks = ["127.0.0.1/32"]
allow-plaintext-auth = true
max-connections-per-client = 4
auth-max-failures = 5
auth-failure-delay = "0s"

[auth]
users-file = "{users}"
{extra}
''',
    )
    daemon.start()
    return daemon, port


def _connect(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(15)
    sock.bind((STRANGER, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _greeted(port: int) -> tuple[socket.socket, bytes]:
    """A connection and its greeting, once the daemon has let go of this client's
    previous connections: closing a socket here and the daemon counting it closed
    are not one moment, so a new round's connection can briefly exceed the limit."""
    deadline = time.monotonic() + 10
    while True:
        sock = _connect(port)
        greeting = _reply(sock)
        if b"Too many connections" not in greeting or time.monotonic() > deadline:
            return sock, greeting
        sock.close()
        time.sleep(0.05)


def _reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") or data.split(b"\r\n")[-2][3:4] == b"-":
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_connections_per_client_are_counted_over_both_receivers(
    make_daemon: Callable[..., DaemonHandle], tmp_path: Path
) -> None:
    _, port = _daemon(make_daemon, tmp_path)
    socks = [_connect(port) for _ in range(10)]
    try:
        greetings = sorted(_reply(sock)[:3] for sock in socks)
    finally:
        for sock in socks:
            sock.close()
    # Kept per receiver, the limit would have let up to 8 in.
    assert greetings == [b"220"] * 4 + [b"421"] * 6, greetings


def test_concurrent_auth_exchanges_are_capped_over_both_receivers(
    make_daemon: Callable[..., DaemonHandle], tmp_path: Path
) -> None:
    """AUTH LOGIN holds its attempt open while the client answers the challenges: of
    four at once, ``auth-max-concurrent-per-client`` (3) proceed, one gets 454."""
    _, port = _daemon(make_daemon, tmp_path)
    socks = [_connect(port) for _ in range(4)]
    try:
        for sock in socks:
            assert _reply(sock).startswith(b"220")
            sock.sendall(b"EHLO stranger.test\r\n")
            _reply(sock)
        codes = []
        for sock in socks:
            sock.sendall(b"AUTH LOGIN\r\n")
            codes.append(_reply(sock))
    finally:
        for sock in socks:
            sock.close()
    assert [c[:3] for c in codes] == [b"334", b"334", b"334", b"454"], codes
    assert b"Too many authentication attempts in progress" in codes[3]


def test_parallel_auth_guesses_get_at_most_max_failures_verified(
    make_daemon: Callable[..., DaemonHandle], tmp_path: Path
) -> None:
    """Guesses fired on four connections at once, round after round: five are
    verified in all (auth-max-failures), every other one is refused unverified."""
    daemon, port = _daemon(make_daemon, tmp_path)
    guess = b"AUTH PLAIN " + base64.b64encode(f"\0{USER}\0wrong".encode()) + b"\r\n"
    codes: list[bytes] = []
    refused_at_connect = 0
    for _ in range(3):
        socks: list[socket.socket] = []
        try:
            talking = []
            for _ in range(4):
                sock, greeting = _greeted(port)
                socks.append(sock)
                if greeting.startswith(b"421 4.7.0 Too many authentication failures"):
                    refused_at_connect += 1  # blocked already, on every receiver
                    continue
                assert greeting.startswith(b"220"), greeting
                sock.sendall(b"EHLO stranger.test\r\n")
                _reply(sock)
                talking.append(sock)
            for sock in talking:
                sock.sendall(guess)
            codes.extend(_reply(sock)[:3] for sock in talking)
        finally:
            for sock in socks:
                sock.close()
    assert set(codes) <= {b"535", b"454"}, codes
    assert codes.count(b"535") == 5, codes
    assert refused_at_connect >= 4  # the last round at least
    assert daemon.log_text().count("auth failed: client=127.0.0.9") == 5


def test_a_client_talking_before_the_greeting_never_gets_an_answer_first(
    make_daemon: Callable[..., DaemonHandle], tmp_path: Path
) -> None:
    """A stranger's admission waits for the shared limits; bytes it sends meanwhile
    (uvloop delivers them although reading is paused) are read after the greeting: on an
    mx listener that is a pregreet talker (554), on submission the 220 comes first."""
    mx_port = free_port()
    daemon, port = _daemon(
        make_daemon,
        tmp_path,
        extra=f"""
[[listener]]
address = "127.0.0.1:{mx_port}"
relay-networks = ["127.0.0.1/32"]
""",
    )
    del daemon
    for listener, expected in (
        (mx_port, b"554 5.5.0 Protocol error: client spoke before the greeting\r\n"),
        (port, b"220 "),
    ):
        sock = _connect(listener)
        try:
            sock.sendall(b"EHLO early.test\r\n")
            assert _reply(sock).startswith(expected)
        finally:
            sock.close()
