"""The load: SMTP clients in threads, at a bounded rate, that remember every reply.

Two channels: ``relay`` (the mx listener, from 127.0.0.1, in relay-networks) and
``submission`` (STARTTLS, then AUTH PLAIN, each worker from its own 127.0.1.N address
so the per-client connection limits stay at their defaults). A message is ``accepted``
only when its final reply was 250; one whose reply never came (the daemon was killed
while it waited) is ``unknown``: it may or may not have been stored. Every attempt uses a
fresh uid, so a client's retry is never mistaken for a duplicate delivery.
"""

from __future__ import annotations

import random
import re
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from soak.plan import PlannedMessage, plan_message

State = Literal["accepted", "unknown", "refused"]
_QUEUED_AS = re.compile(r"queued as (\S+)", re.I)
_CLIENT_ERRORS = (smtplib.SMTPException, OSError)


@dataclass(frozen=True)
class Attempt:
    uid: str
    channel: str
    kind: str
    sender: str
    rcpts: tuple[str, ...]  # the recipients the server took at RCPT
    state: State
    reply: str
    queue_id: str
    at: float  # when the final reply (or the failure) came


@dataclass(frozen=True)
class Channel:
    name: str
    host: str
    port: int
    workers: int
    rate: float  # messages per second over all its workers
    tls_auth: tuple[str, str] | None = None  # (user, password) for STARTTLS + AUTH PLAIN


class Pacer:
    """Hands out send slots ``1/rate`` apart, shared by a channel's workers."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        """Sleep until the next slot; False when ``stop`` was set meanwhile."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        return not stop.wait(max(0.0, slot - now))


@dataclass
class Ledger:
    """Every attempt, by uid; written by the worker threads."""

    attempts: dict[str, Attempt] = field(default_factory=dict)
    connection_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts[attempt.uid] = attempt

    def connection_failed(self) -> None:
        with self._lock:
            self.connection_errors += 1

    def snapshot(self) -> list[Attempt]:
        with self._lock:
            return list(self.attempts.values())

    def count(self, state: State) -> int:
        with self._lock:
            return sum(1 for a in self.attempts.values() if a.state == state)


class Load:
    """Starts the channels' worker threads; ``stop`` ends them within a few seconds."""

    def __init__(self, channels: list[Channel], ledger: Ledger, seed: int) -> None:
        self.channels = channels
        self.ledger = ledger
        self.seed = seed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for c_index, channel in enumerate(self.channels):
            pacer = Pacer(channel.rate)
            for w in range(channel.workers):
                worker = _Worker(channel, pacer, self.ledger, f"{c_index}{w}", self.seed, w)
                thread = threading.Thread(
                    target=worker.run, args=(self._stop,), name=f"soak-{channel.name}-{w}"
                )
                thread.start()
                self._threads.append(thread)

    def stop(self) -> list[str]:
        """Stop and join; the names of threads that did not end in time (none expected)."""
        self._stop.set()
        stuck = []
        for thread in self._threads:
            thread.join(60)
            if thread.is_alive():
                stuck.append(thread.name)
        return stuck


class _Worker:
    def __init__(
        self, channel: Channel, pacer: Pacer, ledger: Ledger, tag: str, seed: int, index: int
    ) -> None:
        self.channel = channel
        self.pacer = pacer
        self.ledger = ledger
        self.tag = tag
        self.seq = 0
        self.rng = random.Random(f"{seed}-{tag}")
        self.source = (f"127.0.1.{index + 1}", 0) if channel.tls_auth else None

    def next_uid(self) -> str:
        self.seq += 1
        return f"{self.tag}x{self.seq:06d}"

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with self._connect() as client:
                    for _ in range(self.rng.randint(1, 30)):
                        if not self.pacer.wait(stop):
                            break
                        self._send(client, plan_message(self.next_uid(), self.rng))
            except _CLIENT_ERRORS:
                self.ledger.connection_failed()
                stop.wait(self.rng.uniform(0.3, 1.0))  # the daemon is restarting

    def _connect(self) -> smtplib.SMTP:
        c = self.channel
        client = smtplib.SMTP(c.host, c.port, timeout=30, source_address=self.source)
        try:
            client.ehlo("soak-client.test")
            if c.tls_auth is not None:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                client.starttls(context=context)
                client.ehlo("soak-client.test")
                client.user, client.password = c.tls_auth
                client.auth("PLAIN", client.auth_plain)
        except BaseException:
            client.close()
            raise
        return client

    def _send(self, client: smtplib.SMTP, msg: PlannedMessage) -> None:
        """One transaction; records the attempt whatever happens, then re-raises errors."""
        taken: list[str] = []
        in_data = False
        try:
            code, reply = client.mail(msg.sender)
            if code == 250:
                for rcpt in msg.rcpts:
                    r_code, r_reply = client.rcpt(rcpt)
                    if r_code in (250, 251):
                        taken.append(rcpt)
                    else:
                        reply = r_reply
            if code != 250 or not taken:
                self._record(msg, taken, "refused", f"{code} {_text(reply)}", "")
                client.rset()
                return
            in_data = True
            code, reply = client.data(msg.content)
        except _CLIENT_ERRORS as exc:
            if isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code != 354:
                # DATA itself refused: the content was never sent
                self._record(msg, taken, "refused", f"{exc.smtp_code} {_text(exc.smtp_error)}", "")
            else:
                self._record(msg, taken, "unknown" if in_data else "refused", repr(exc), "")
            raise
        text = _text(reply)
        if code == 250:
            found = _QUEUED_AS.search(text)
            self._record(msg, taken, "accepted", f"{code} {text}", found.group(1) if found else "")
        else:
            self._record(msg, taken, "refused", f"{code} {text}", "")

    def _record(
        self, msg: PlannedMessage, taken: list[str], state: State, reply: str, queue_id: str
    ) -> None:
        self.ledger.add(
            Attempt(
                msg.uid,
                self.channel.name,
                msg.kind,
                msg.sender,
                tuple(taken),
                state,
                reply,
                queue_id,
                time.time(),
            )
        )


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
