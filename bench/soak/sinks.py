"""Loopback SMTP servers that play the destinations and write down everything they see.

One asyncio loop in a background thread serves all of them. Each sink is an
``RcptPolicy`` (the reply to one RCPT) on its own loopback address; the common
``SinkLog`` records every message taken (with the time its final dot arrived, before
the 250 went out), every refused recipient, and whether the client sent another command
after our 250: a client that did not may never have read it (a kill in between), so a
second copy of that message is an expected duplicate, not a defect.

No CHUNKING, DSN or STARTTLS is offered: plain DATA is enough to count messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from soak.plan import HARD_PREFIX, uid_in, uid_of_sender

RcptPolicy = Callable[[str, float], str]  # (address, now) -> reply line

_MAX_LINE = 8192
_HEADER_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.I | re.M)
_QUEUE_ID = re.compile(rb"^X-Outrider-Queue-ID:[ \t]*(\S+)", re.I | re.M)
_RECIPIENT_BLOCK = re.compile(
    rb"^Final-Recipient:[ \t]*rfc822;[ \t]*(\S+)\r?\n(?:[^\r\n]+\r?\n)*?Action:[ \t]*(\w+)",
    re.I | re.M,
)


def accept_all(address: str, now: float) -> str:
    return "250 2.1.5 OK"


def hard_bounces(address: str, now: float) -> str:
    if address.lower().startswith(HARD_PREFIX):
        return f"550 5.1.1 <{address}>: no such user here"
    return "250 2.1.5 OK"


@dataclass
class Greylist:
    """Answers 451 to an address until ``hold`` seconds after its first attempt."""

    hold: float
    first_seen: dict[str, float] = field(default_factory=dict)

    def __call__(self, address: str, now: float) -> str:
        first = self.first_seen.setdefault(address.lower(), now)
        if now - first < self.hold:
            return "451 4.7.1 Greylisted, please try again later"
        return "250 2.1.5 OK"


@dataclass(frozen=True)
class DsnReport:
    """What a received DSN says: which message, which recipients, what happened."""

    original_uid: str | None  # from the returned copy of the original
    original_queue_id: str | None  # X-Outrider-Queue-ID
    actions: tuple[tuple[str, str], ...]  # (Final-Recipient, Action)


@dataclass(frozen=True)
class Receipt:
    """One message a sink took; ``index`` keys ``SinkLog.acknowledged``."""

    index: int
    sink: str
    mail_from: str
    rcpts: tuple[str, ...]
    message_id: str
    at: float
    session: int
    dsn: DsnReport | None


@dataclass(frozen=True)
class Refusal:
    sink: str
    rcpt: str
    reply: str
    at: float


def parse_dsn(data: bytes, mail_from: str, rcpts: tuple[str, ...]) -> DsnReport:
    original = uid_in(data.decode("ascii", "replace"))
    if original is None and rcpts:
        original = uid_of_sender(rcpts[0])
    queue_id = _QUEUE_ID.search(data)
    actions = tuple(
        (m.group(1).decode("utf-8", "replace").lower(), m.group(2).decode().lower())
        for m in _RECIPIENT_BLOCK.finditer(data)
    )
    return DsnReport(original, queue_id.group(1).decode() if queue_id else None, actions)


def header_message_id(data: bytes) -> str:
    head = data.split(b"\r\n\r\n", 1)[0]
    found = _HEADER_ID.search(head)
    return found.group(1).decode("utf-8", "replace") if found else ""


class SinkLog:
    """Everything all sinks saw; safe to read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._receipts: list[Receipt] = []
        self._refusals: list[Refusal] = []
        self._acknowledged: set[int] = set()
        self._sessions = 0
        self.protocol_errors: list[str] = []  # commands no sink should ever get

    def new_session(self) -> int:
        with self._lock:
            self._sessions += 1
            return self._sessions

    def took(
        self, sink: str, mail_from: str, rcpts: tuple[str, ...], data: bytes, session: int
    ) -> int:
        dsn = parse_dsn(data, mail_from, rcpts) if mail_from == "" else None
        message_id = header_message_id(data)
        with self._lock:
            index = len(self._receipts)
            receipt = Receipt(index, sink, mail_from, rcpts, message_id, time.time(), session, dsn)
            self._receipts.append(receipt)
            return index

    def refused(self, sink: str, rcpt: str, reply: str) -> None:
        with self._lock:
            self._refusals.append(Refusal(sink, rcpt.lower(), reply, time.time()))

    def bad_command(self, line: str) -> None:
        with self._lock:
            self.protocol_errors.append(line[:200])

    def acknowledge(self, index: int) -> None:
        with self._lock:
            self._acknowledged.add(index)

    @property
    def receipts(self) -> list[Receipt]:
        with self._lock:
            return list(self._receipts)

    @property
    def refusals(self) -> list[Refusal]:
        with self._lock:
            return list(self._refusals)

    @property
    def acknowledged(self) -> set[int]:
        with self._lock:
            return set(self._acknowledged)

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self._receipts), len(self._refusals)


class _Session(asyncio.Protocol):
    def __init__(self, name: str, policy: RcptPolicy, log: SinkLog) -> None:
        self.name = name
        self.policy = policy
        self.log = log
        self.session = log.new_session()
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.in_data = False
        self.helo = False
        self.mail_from: str | None = None
        self.rcpts: list[str] = []
        self.unacknowledged: int | None = None  # receipt whose 250 no command followed yet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._send(f"220 sink-{self.name}.soak.test ESMTP soak sink")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None and not self.transport.is_closing():
            if self.in_data:
                if self.buf.startswith(b".\r\n"):
                    content, self.buf = b"", self.buf[3:]
                else:
                    end = self.buf.find(b"\r\n.\r\n")
                    if end < 0:
                        return
                    content, self.buf = self.buf[: end + 2], self.buf[end + 5 :]
                self.in_data = False
                if content.startswith(b".."):
                    content = content[1:]
                self._message(content.replace(b"\r\n..", b"\r\n."))
                continue
            nl = self.buf.find(b"\n")
            if nl < 0:
                if len(self.buf) > _MAX_LINE:
                    self._send("500 5.5.2 Line too long")
                    self.transport.close()
                return
            line, self.buf = self.buf[:nl].rstrip(b"\r"), self.buf[nl + 1 :]
            self._command(line.decode("utf-8", "replace"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def _send(self, reply: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply.encode() + b"\r\n")

    def _reset(self) -> None:
        self.mail_from = None
        self.rcpts = []

    def _command(self, line: str) -> None:
        if self.unacknowledged is not None:  # the client read our 250 and went on
            self.log.acknowledge(self.unacknowledged)
            self.unacknowledged = None
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb == "EHLO":
            self.helo = True
            self._reset()
            self._send(
                f"250-sink-{self.name}.soak.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                "250-SIZE 52428800\r\n250 ENHANCEDSTATUSCODES"
            )
        elif verb == "HELO":
            self.helo = True
            self._reset()
            self._send(f"250 sink-{self.name}.soak.test")
        elif verb == "MAIL" and arg[:5].upper() == "FROM:" and self.helo:
            self._reset()
            self.mail_from = _path(arg[5:])
            self._send("250 2.1.0 OK")
        elif verb == "RCPT" and arg[:3].upper() == "TO:" and self.mail_from is not None:
            address = _path(arg[3:])
            reply = self.policy(address, time.time())
            if reply.startswith("2"):
                self.rcpts.append(address)
            else:
                self.log.refused(self.name, address, reply)
            self._send(reply)
        elif verb == "DATA" and self.mail_from is not None:
            if self.rcpts:
                self.in_data = True
                self._send("354 End data with <CR><LF>.<CR><LF>")
            else:  # pipelined after refused recipients: the usual answer, not an error
                self._send("554 5.5.1 No valid recipients")
        elif verb == "RSET":
            self._reset()
            self._send("250 2.0.0 OK")
        elif verb == "NOOP":
            self._send("250 2.0.0 OK")
        elif verb == "QUIT":
            self._send("221 2.0.0 Bye")
            if self.transport is not None:
                self.transport.close()
        else:
            self.log.bad_command(line)
            self._send("503 5.5.1 Bad sequence of commands or unknown command")

    def _message(self, content: bytes) -> None:
        assert self.mail_from is not None
        index = self.log.took(self.name, self.mail_from, tuple(self.rcpts), content, self.session)
        self._reset()
        self.unacknowledged = index
        self._send("250 2.0.0 OK taken")


def _path(arg: str) -> str:
    arg = arg.strip()
    if arg.startswith("<") and ">" in arg:
        return arg[1 : arg.index(">")]
    return arg.split(" ", 1)[0]


class Sinks:
    """The destination servers, each on its own loopback address, all on ``port``."""

    def __init__(self, policies: dict[str, tuple[str, RcptPolicy]], port: int) -> None:
        self.policies = policies  # name -> (host, policy)
        self.port = port
        self.log = SinkLog()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []

    def start(self) -> None:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                for name, (host, policy) in self.policies.items():
                    server = loop.run_until_complete(
                        loop.create_server(
                            functools.partial(_Session, name, policy, self.log),
                            host,
                            self.port,
                            reuse_address=True,
                            backlog=512,
                        )
                    )
                    self._servers.append(server)
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            for server in self._servers:
                server.close()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="soak-sinks", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise failure[0]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None
