"""The asyncio transport for one inbound SMTP session.

A thin adapter: bytes from the socket go into the sans-I/O ServerConnection. MAIL,
RCPT and the finished message become a :class:`~outrider.intake.Submission` for the
intake (:mod:`outrider.intake`), whose verdicts become replies; the session itself
neither checks, stores nor schedules mail. STARTTLS is answered here; AUTH by
:class:`~outrider.inbound.auth_exchange.AuthExchange`, and whether the connection may
go on at all by :class:`~outrider.inbound.admission.Admission`.
Replies produced while handling one read are written back in a single write so a
pipelined batch costs one syscall.

Work that waits (the intake storing a message, a check that answers with an
awaitable, a TLS handshake, a SASL step that hashes a password, the delay before a
failed-AUTH reply, writing a piece of a big message to its spill file) runs as a task
while the socket is not read, so pipelined input waits in the kernel, never in Python
buffers, and other sessions are not held up.

Message content is collected by a :class:`~outrider.intake.content.ContentBuffer`: in
memory up to 256 KiB, past that the header section stays in memory and the rest is
written to the spool as it arrives, one piece at a time (reading paused meanwhile), so
a big message costs a session about one read's worth of memory.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from outrider.auth.sasl import Verifier
from outrider.auth.throttle import AuthThrottle
from outrider.inbound.admission import AUTH_BLOCKED_CONNECT as AUTH_BLOCKED_CONNECT
from outrider.inbound.admission import Admission
from outrider.inbound.auth_exchange import AUTH_BLOCKED as AUTH_BLOCKED
from outrider.inbound.auth_exchange import AUTH_UNAVAILABLE as AUTH_UNAVAILABLE
from outrider.inbound.auth_exchange import AuthExchange
from outrider.inbound.limits import ConnectionGate
from outrider.inbound.relay import IPNetwork, client_may_relay
from outrider.intake import (
    Accepted,
    Intake,
    MailEnvelope,
    MailRecipient,
    Rejected,
    Source,
    Submission,
)
from outrider.intake.content import Content, ContentBuffer
from outrider.intake.verdict import Verdict, VerdictResult
from outrider.smtp import server as smtp
from outrider.smtp.replies import LOCAL_ERROR, Reply

log = logging.getLogger("outrider.inbound")

# How long an mx listener holds its greeting for clients outside relay-networks. A
# client that talks before the 220 is a spam engine that does not wait for replies
# (pregreet); it is answered 554 5.5.0 and disconnected.
PREGREET_DELAY = 0.5
TLS_HANDSHAKE_TIMEOUT = 30.0

TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available due to local problem")


# DATA octets that count as progress for the data timeout (see data_received): far
# below any real sender's rate, far above a slowloris trickle's.
PROGRESS_BYTES = 512


class UserDirectory(Verifier, Protocol):
    """What a session needs from the user store (:class:`outrider.auth.store.UserStore`)."""

    def reload_if_changed(self) -> bool: ...

    def sender_allowed(self, username: str, sender: str) -> bool: ...

    def max_msg_rate(self, username: str) -> str | None: ...


@dataclass
class ListenerContext:
    """Everything a session needs from its listener; replaced as a whole on reload.

    ``gate`` and ``throttle`` hold per-client state and are carried over by
    :meth:`outrider.inbound.receiver.Listener.update`.
    """

    name: str
    protocol_config: smtp.ServerConfig
    relay_networks: tuple[IPNetwork, ...]
    intake: Intake  # the process's one way in: checks, header completion, store, schedule
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    sessions: set[InboundSession] = field(default_factory=set)
    role: str = "mx"
    tls: ssl.SSLContext | None = None  # STARTTLS (if protocol_config.starttls) or implicit
    implicit_tls: bool = False  # RFC 8314: the listener's socket does TLS; greet after it
    users: UserDirectory | None = None  # None: AUTH cannot succeed
    throttle: AuthThrottle | None = None
    gate: ConnectionGate | None = None
    greeting_delay: float = 0.0  # > 0: hold the greeting for untrusted clients (pregreet)
    # limits-exempt-relay-networks: clients in relay_networks skip the gate's per-client
    # count and rate and the per-connection message and recipient limits
    limits_exempt_trusted: bool = False
    add_missing_headers: bool = False  # Date and Message-ID (submission)
    honour_vmta_header: bool = False  # process-x-virtual-mta
    listener_vmta: str | None = None  # the listener's default-virtual-mta
    tls_handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT
    monotonic: Callable[[], float] = time.monotonic  # for the gate and the AUTH throttle

    def __post_init__(self) -> None:
        if self.implicit_tls and self.tls is None:
            raise ValueError("an implicit-TLS listener needs an SSL context")
        if self.protocol_config.starttls and self.tls is None:
            raise ValueError("STARTTLS needs an SSL context")


class InboundSession(asyncio.Protocol):
    def __init__(self, ctx: ListenerContext) -> None:
        self.ctx = ctx
        self.conn = smtp.ServerConnection(ctx.protocol_config, secure=ctx.implicit_tls)
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.client_trusted = False
        self.helo = ""
        self.extended = False
        self.content = ContentBuffer(ctx.intake.spill)  # of the transaction in progress
        self.submission: Submission | None = None  # of the transaction opened by MAIL
        self.sender = ""
        self.storing: asyncio.Task[None] | None = None  # the intake is taking the message
        self.task: asyncio.Task[None] | None = None  # TLS handshake or an AUTH step
        self.last_activity = time.monotonic()
        self.closing = False  # graceful stop requested: close after the current transaction
        self.admission = Admission(ctx)
        # Bytes that arrive while a shared throttle decides on admission: uvloop may
        # deliver them although reading is paused. They are the client's first words
        # and must reach the protocol core only after the greeting (or its hold, which
        # then sees a pregreet talker), never before it.
        self._early: list[bytes] | None = None
        self._trickled = 0  # DATA octets since the timeout clock last restarted
        self.auth = AuthExchange(ctx, self.conn)
        self._greet_timer: asyncio.TimerHandle | None = None
        self._done = asyncio.get_running_loop().create_future()

    @property
    def busy(self) -> bool:
        return self.storing is not None or self.task is not None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:
            return  # the TLS layer of start_tls announcing itself: nothing new
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        if self.ctx.implicit_tls and transport.get_extra_info("ssl_object") is None:
            # The core takes this connection for secure: never serve it in clear. (An
            # implicit-TLS Listener's socket has done the handshake before we are called.)
            log.error("listener %s: implicit-TLS connection without TLS, closed", self.ctx.name)
            transport.close()  # nothing was written
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        ctx = self.ctx
        self.client_ip = str(peer[0]) if peer else ""
        self.client_trusted = client_may_relay(self.client_ip, ctx.relay_networks)
        if self.admission.exempt(self.client_trusted):
            self.conn.lift_connection_limits()
        ctx.sessions.add(self)
        if self.admission.answers_now(self.client_trusted):
            self._open(self.admission.admit(self.client_ip, trusted=self.client_trusted))
        else:  # a shared throttle answers over the network: admit in a task, reading paused
            self._early = []
            self._run_task(self._admit_shared(), "admit")

    def data_received(self, data: bytes) -> None:
        # The timeout clock restarts on progress, not on any byte (slowloris): outside
        # DATA when a line is complete, in DATA every PROGRESS_BYTES octets. A client
        # trickling a byte every few seconds, or an endless over-long line, times out.
        if self.conn.in_data:
            self._trickled += len(data)
            if self._trickled >= PROGRESS_BYTES:
                self._trickled = 0
                self.last_activity = time.monotonic()
        elif b"\n" in data:
            self.last_activity = time.monotonic()
        if self._early is not None:
            self._early.append(data)
            return
        self.conn.receive_data(data)
        self._pump()

    def eof_received(self) -> bool | None:
        if self._early is not None:
            self._early.append(b"")
            return None
        self.conn.receive_data(b"")
        self._pump()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.sessions.discard(self)
        self.admission.release()
        if self._greet_timer is not None:
            self._greet_timer.cancel()
        task = self.task
        # A handshake or AUTH step for a client that is gone. Not an admission: it must
        # end to know whether a shared throttle counted the connection (it then releases).
        if task is not None and task is not asyncio.current_task() and task.get_name() != "admit":
            task.cancel()
        self.auth.reset()
        self.content.discard()
        if not self._done.done():
            self._done.set_result(None)

    # -- admission and greeting ---------------------------------------------------------
    async def _admit_shared(self) -> None:
        """Admission through the awaitable throttle calls, then :meth:`_open`."""
        refusal = await self.admission.admit_async(
            self.client_ip, self._done.done, trusted=self.client_trusted
        )
        if self._done.done():  # the client left while the throttle answered
            return
        self._open(refusal)
        early, self._early = self._early or [], None
        if refusal is None:
            for data in early:  # after the greeting (or its hold): in order, as sent
                self.conn.receive_data(data)

    def _open(self, refusal: Reply | None) -> None:
        """After admission (and, on an implicit-TLS listener, the handshake): refuse, or
        greet (after the pregreet delay when it applies)."""
        ctx = self.ctx
        if refusal is not None:
            self.conn.refuse(refusal)
            self._flush()
        elif ctx.implicit_tls:
            self._log_tls()
            self._greet()
        elif ctx.greeting_delay > 0 and not self.client_trusted:
            self.conn.hold_greeting()
            loop = asyncio.get_running_loop()
            self._greet_timer = loop.call_later(ctx.greeting_delay, self._greet)
        else:
            self._greet()

    def _greet(self) -> None:
        self._greet_timer = None
        self.conn.send_greeting()
        if self.conn.closed:
            log.info("pregreet: client=%s spoke before the greeting", self.client_ip)
        self._pump()

    # -- driving the protocol core ------------------------------------------------------
    def _pump(self) -> None:
        conn = self.conn
        while not self.busy:
            event = conn.next_event()
            if event is None:
                break
            if isinstance(event, smtp.MessageData):
                write = self.content.add(event.data)
                if write is not None:  # spilled: the next piece waits for this one's write
                    self._run_task(write, "spill")
            elif isinstance(event, smtp.RcptTo):
                self._on_rcpt(event)
            elif isinstance(event, smtp.MailFrom):
                self._on_mail(event)
            elif isinstance(event, smtp.MessageComplete):
                self._on_complete()
            elif isinstance(event, smtp.Hello):
                self.helo = event.name
                self.extended = event.extended
                conn.accept()
            elif isinstance(event, smtp.StartTlsRequested):
                self._on_starttls()
            elif isinstance(event, smtp.AuthRequested):
                self._run_task(self.auth.start(event, self.client_ip), "auth")
            elif isinstance(event, smtp.AuthResponse):
                self._run_task(self.auth.step(event.data), "auth")
            elif isinstance(
                event, smtp.MessageAborted | smtp.TransactionReset | smtp.ConnectionClosed
            ):
                self.content.discard()
        if self.closing and not self.busy and conn.transaction is None and not conn.closed:
            conn.shutdown()
        self._flush()

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        transport = self.transport
        if transport is None:
            return
        if out and not transport.is_closing():
            transport.write(out)
        if self.conn.closed and not transport.is_closing():
            transport.close()

    def _run_task(self, work: Awaitable[None], name: str) -> None:
        """Run ``work`` with reading paused; the session resumes when it ends."""
        if self.transport is not None:
            self.transport.pause_reading()
        self.task = asyncio.get_running_loop().create_task(self._task_body(work), name=name)

    async def _task_body(self, work: Awaitable[None]) -> None:
        try:
            await work
        finally:
            self.task = None
        self._resume()

    def _resume(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()
            self._pump()

    # -- MAIL and RCPT: the intake's checks ---------------------------------------------
    def _on_mail(self, event: smtp.MailFrom) -> None:
        self.content.discard()
        self.submission = self._submission(event.params)
        self.sender = event.sender
        self._answer(self.ctx.intake.check_mail(self.submission, event.sender))

    def _on_rcpt(self, event: smtp.RcptTo) -> None:
        submission = self.submission
        if submission is None:  # pragma: no cover - the core only passes RCPT after MAIL
            self.conn.reject(LOCAL_ERROR)
            return
        self._answer(self.ctx.intake.check_rcpt(submission, self.sender, event.recipient))

    def _answer(self, result: VerdictResult) -> None:
        """Reply now, or (a check that waits) once the verdict is in."""
        if isinstance(result, Verdict):
            self._reply(result)
        else:
            self._run_task(self._await_verdict(result), "check")

    async def _await_verdict(self, pending: Awaitable[Verdict]) -> None:
        self._reply(await pending)

    def _reply(self, verdict: Verdict) -> None:
        if verdict.reply is None:
            self.conn.accept()
        else:
            self.conn.reject(verdict.reply)  # a 421 (disconnect) also closes

    def _submission(self, params: smtp.MailParams) -> Submission:
        """The transaction's facts for the intake. AUTH and STARTTLS cannot happen
        inside a transaction, so they hold until the message is complete. A client
        sending many messages in one session usually repeats them: the previous
        transaction's (immutable) Submission is then reused."""
        ctx = self.ctx
        auth_user = self.conn.authenticated
        protocol = self._protocol_name(params.smtputf8)
        body_8bit = params.body in ("8BITMIME", "BINARYMIME")
        body_binary = params.body == "BINARYMIME"
        last = self.submission
        if (
            last is not None
            and last.helo == self.helo
            and last.auth_user == auth_user
            and last.protocol == protocol
            and last.envid == params.envid
            and last.ret is params.ret
            and last.smtputf8 is params.smtputf8
            and last.body_8bit is body_8bit
            and last.body_binary is body_binary
        ):
            return last  # the listener and the client are the session's own
        return Submission(
            source=Source.SMTP,
            listener=ctx.name,
            client_ip=self.client_ip,
            helo=self.helo,
            protocol=protocol,
            client_trusted=self.client_trusted,
            auth_user=auth_user,
            vmta_header=ctx.honour_vmta_header,
            listener_vmta=ctx.listener_vmta,
            envid=params.envid,
            ret=params.ret,
            smtputf8=params.smtputf8,
            body_8bit=body_8bit,
            body_binary=body_binary,
            add_missing_headers=ctx.add_missing_headers,
        )

    # -- STARTTLS ---------------------------------------------------------------------------
    def _on_starttls(self) -> None:
        if self.ctx.tls is None:  # pragma: no cover - the core only offers it with a context
            self.conn.reject(TLS_UNAVAILABLE)
            return
        self.conn.accept()  # 220, and the core drops whatever was pipelined behind it
        self._flush()
        self._run_task(self._handshake(), "starttls")

    async def _handshake(self) -> None:
        ctx = self.ctx
        transport = self.transport
        if transport is None or transport.is_closing() or ctx.tls is None:
            return
        loop = asyncio.get_running_loop()
        try:
            tls_transport = await loop.start_tls(
                transport,
                self,
                ctx.tls,
                server_side=True,
                ssl_handshake_timeout=ctx.tls_handshake_timeout,
            )
        except (OSError, TimeoutError, ConnectionError) as exc:  # ssl.SSLError is an OSError
            # (a timeout's message is empty: then its name says what happened)
            reason = str(exc) or type(exc).__name__
            log.info("TLS handshake failed: client=%s: %s", self.client_ip, reason)
            transport.abort()
            self.connection_lost(None)
            return
        if tls_transport is None:  # pragma: no cover - only for a closed transport
            transport.abort()
            return
        self.transport = tls_transport
        self._log_tls()
        self.last_activity = time.monotonic()
        self.conn.tls_established()

    def _log_tls(self) -> None:
        transport = self.transport
        if transport is None or not log.isEnabledFor(logging.DEBUG):
            return
        version = transport.get_extra_info("ssl_object")
        log.debug(
            "TLS established: client=%s %s %s",
            self.client_ip,
            version.version() if version is not None else "?",
            (transport.get_extra_info("cipher") or ("?",))[0],
        )

    # -- the message: handed to the intake --------------------------------------------------
    def _on_complete(self) -> None:
        tx = self.conn.transaction
        submission = self.submission
        if tx is None or submission is None:  # pragma: no cover - the core guarantees both
            self.conn.reject(LOCAL_ERROR)
            return
        content = self.content.take()
        if isinstance(content, Reply):  # a header section too large to spill the message
            log.info("refused: client=%s from=<%s>: %s", self.client_ip, tx.sender, content)
            self.conn.reject(content)
            return
        mail = MailEnvelope(
            tx.sender,
            tuple(MailRecipient(r.address, r.params.notify, r.params.orcpt) for r in tx.recipients),
        )
        # Stop reading while the message is stored: pipelined input waits in the kernel
        # rather than in the protocol core's bounded buffer.
        if self.transport is not None:
            self.transport.pause_reading()
        self.storing = asyncio.get_running_loop().create_task(
            self._submit(submission, mail, content), name="intake"
        )

    def _protocol_name(self, smtputf8: bool) -> str:
        """The ``with`` protocol of the Received header (RFC 3848)."""
        if not self.extended:
            return "SMTP"
        name = "UTF8SMTP" if smtputf8 else "ESMTP"
        if self.conn.secure:
            name += "S"
        if self.conn.authenticated is not None:
            name += "A"
        return name

    async def _submit(self, submission: Submission, mail: MailEnvelope, content: Content) -> None:
        try:
            result: Accepted | Rejected = await self.ctx.intake.submit(submission, mail, content)
        except Exception:  # a bug, not a refusal: the client may retry
            log.exception("intake failed: client=%s from=<%s>", self.client_ip, mail.sender)
            result = Rejected(LOCAL_ERROR)
        self.storing = None
        if isinstance(result, Accepted):
            self.conn.accept(f"OK queued as {result.queue_id}")
        else:
            self.conn.reject(result.reply)
        self._resume()

    # -- lifecycle ------------------------------------------------------------------------
    def idle_for(self, now: float) -> float:
        return now - self.last_activity

    def in_data(self) -> bool:
        return self.conn.in_data

    def timeout(self) -> None:
        """Idle too long: say so and close (RFC 5321 4.5.3.2 server timeout)."""
        log.info("timeout: client=%s", self.client_ip)
        self.content.discard()
        self.conn.timeout()
        self._flush()

    def request_close(self) -> None:
        """Graceful stop: close now if idle, else after the transaction in progress."""
        self.closing = True
        if not self.busy:
            self._pump()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self) -> None:
        await self._done
