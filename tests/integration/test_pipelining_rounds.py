"""Round trips of the outbound SMTP client against a loopback server that counts them.

Behaviour, not timing: the server answers each *turn* (everything the client sent
before the server replied) in one write, and records which commands each turn
carried. With PIPELINING, MAIL, RCPT and DATA travel in one write; and a daemon
delivering a backlog over one connection pipelines the next message's commands
behind the previous end of data, so a message costs one turn instead of two.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outrider.delivery.smtp_client import SmtpSession, SmtpTimeouts
from outrider.message.envelope import Envelope, Recipient
from tests.support.daemon import free_port, wait_until, write_config

FAST = SmtpTimeouts(
    connect=2, greeting=2, ehlo=2, mail=2, rcpt=2, data_init=2, data_block=2, data_done=2,
    rset=2, quit=1, starttls=2,
)  # fmt: skip


class TurnServer:
    """A threaded SMTP sink that batches its replies per turn and records each turn.

    ``linger`` is how long it keeps reading after the first octets of a turn before
    answering (a slow, distant server); ``writes`` are the octets of each recv()."""

    def __init__(self, *, pipelining: bool = True, linger: float = 0.0) -> None:
        self.pipelining = pipelining
        self.linger = linger
        self.turns: list[list[str]] = []  # per turn: command verbs, "." for an end of data
        self.recvs: list[bytes] = []
        self.messages = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.sendall(b"220 turns.test ESMTP\r\n")
            buf = b""
            in_data = False
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                with self._lock:
                    self.recvs.append(chunk)
                if self.linger:
                    time.sleep(self.linger)
                    conn.setblocking(False)
                    with contextlib.suppress(BlockingIOError):
                        while more := conn.recv(65536):
                            chunk += more
                    conn.setblocking(True)
                buf += chunk
                out: list[bytes] = []
                turn: list[str] = []
                quit_ = False
                while True:
                    if in_data:
                        end = buf.find(b"\r\n.\r\n")
                        if end < 0:
                            break
                        buf = buf[end + 5 :]
                        in_data = False
                        turn.append(".")
                        with self._lock:
                            self.messages += 1
                        out.append(b"250 2.0.0 queued\r\n")
                        continue
                    line, sep, rest = buf.partition(b"\r\n")
                    if not sep:
                        break
                    buf = rest
                    verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper().decode()
                    turn.append(verb)
                    if verb == "EHLO":
                        ext = b"250-PIPELINING\r\n" if self.pipelining else b""
                        out.append(b"250-turns.test\r\n" + ext + b"250 8BITMIME\r\n")
                    elif verb == "DATA":
                        in_data = True
                        buf = b"\r\n" + buf  # an empty body ends at the first ".\r\n"
                        out.append(b"354 go ahead\r\n")
                    elif verb == "QUIT":
                        out.append(b"221 bye\r\n")
                        quit_ = True
                        break
                    else:
                        out.append(b"250 ok\r\n")
                if turn:
                    with self._lock:
                        self.turns.append(turn)
                if out:
                    conn.sendall(b"".join(out))
                if quit_:
                    return


@pytest.fixture
def turn_server() -> Iterator[TurnServer]:
    server = TurnServer()
    yield server
    server.close()


def _envelope() -> Envelope:
    return Envelope("Q1", "sender@a.test", [], time.time())


async def _send_one(port: int) -> None:
    session = await SmtpSession.connect("127.0.0.1", port, helo_name="client.test", timeouts=FAST)
    rcpts = [Recipient("one@far.test"), Recipient("two@far.test")]
    result = await session.send(_envelope(), rcpts, b"Subject: t\r\n\r\nhi\r\n")
    assert [r.reply.code for r in result.results] == [250, 250]
    await session.close()


def test_mail_rcpt_data_in_one_write_with_pipelining(turn_server: TurnServer) -> None:
    asyncio.run(_send_one(turn_server.port))
    with_mail = [chunk for chunk in turn_server.recvs if b"MAIL FROM" in chunk]
    assert len(with_mail) == 1
    assert with_mail[0] == (
        b"MAIL FROM:<sender@a.test>\r\nRCPT TO:<one@far.test>\r\nRCPT TO:<two@far.test>\r\nDATA\r\n"
    )
    assert ["MAIL", "RCPT", "RCPT", "DATA"] in turn_server.turns


def test_one_command_per_turn_without_pipelining() -> None:
    server = TurnServer(pipelining=False)
    try:
        asyncio.run(_send_one(server.port))
    finally:
        server.close()
    assert server.turns == [["EHLO"], ["MAIL"], ["RCPT"], ["RCPT"], ["DATA"], ["."], ["QUIT"]]


def test_daemon_pipelines_the_next_message_behind_the_end_of_data(tmp_path: Path) -> None:
    """A backlog of 10 messages over one connection: about one turn per message."""
    server = TurnServer(linger=0.1)
    handle = write_config(
        tmp_path,
        port=free_port(),
        dns=("127.0.0.1", free_port()),  # nothing answers: far.test is routed
        relay_domains=("far.test",),
        extra=(
            f'[domain."far.test"]\nroute = "127.0.0.1:{server.port}"\nmax-smtp-out = 1\n'
            'use-starttls = false\nconnection-idle-timeout = "2s"\n'
        ),
    )
    cli = [sys.executable, "-m", "outrider"]
    try:
        handle.start()
        subprocess.run([*cli, "pause", "queue", "far.test", "-c", str(handle.config_path)],
                       check=True, capture_output=True, cwd=handle.workdir)  # fmt: skip
        with smtplib.SMTP(handle.host, handle.port, timeout=10) as client:
            for i in range(10):
                client.sendmail("s@sender.test", [f"r{i}@far.test"], b"Subject: x\r\n\r\nbody\r\n")
        subprocess.run([*cli, "resume", "queue", "far.test", "-c", str(handle.config_path)],
                       check=True, capture_output=True, cwd=handle.workdir)  # fmt: skip
        wait_until(lambda: server.messages == 10, timeout=20, what="10 messages delivered")
    finally:
        handle.kill()
        server.close()
    carrying_mail = [turn for turn in server.turns if "MAIL" in turn]
    # Every message after the first rides in the turn of the previous end of data.
    assert sum(1 for turn in carrying_mail if turn[0] == ".") >= 8, server.turns
    assert len(server.turns) <= 10 + 4, server.turns  # EHLO, first MAIL, last ".", QUIT
    # The end of data waits briefly for the next message's commands: one write for both.
    assert any(b"\r\n.\r\nMAIL FROM:" in chunk for chunk in server.recvs)
