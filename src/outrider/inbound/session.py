"""The asyncio transport for one inbound SMTP session.

A thin adapter: bytes from the socket go into the sans-I/O ServerConnection; the
events that need a decision (relay check, sender rights, storing the message,
STARTTLS, AUTH) are answered here; replies produced while handling one read are
written back in a single write so a pipelined batch costs one syscall.

Work that waits (storing a message, a TLS handshake, a SASL step that hashes a
password, the delay before a failed-AUTH reply) runs as a task while the socket is
not read, so pipelined input waits in the kernel, never in Python buffers, and
other sessions are not held up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from outrider.auth.rates import UserRateLimiter
from outrider.auth.sasl import SaslMechanism, SaslStep, Verifier, new_mechanism
from outrider.auth.throttle import AuthThrottle
from outrider.inbound.limits import ConnectionGate
from outrider.inbound.relay import IPNetwork, client_may_relay, normalize_domains, relay_allowed
from outrider.message.assemble import AcceptedRecipient, SessionFacts, assemble
from outrider.message.envelope import Envelope
from outrider.message.headers import header_value, rfc5322_date
from outrider.smtp import server as smtp
from outrider.smtp.replies import LOCAL_ERROR, RELAY_DENIED, Reply
from outrider.spool.base import SpoolError

log = logging.getLogger("outrider.inbound")

StoreMessage = Callable[[Envelope, bytes], Awaitable[None]]

# How long an mx listener holds its greeting for clients outside relay-networks. A
# client that talks before the 220 is a spam engine that does not wait for replies
# (pregreet); it is answered 554 5.5.0 and disconnected.
PREGREET_DELAY = 0.5
TLS_HANDSHAKE_TIMEOUT = 30.0

TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available due to local problem")
AUTH_UNAVAILABLE = Reply(454, "4.7.0", "Temporary authentication failure")
AUTH_BLOCKED = Reply(454, "4.7.0", "Too many authentication failures, try again later")
AUTH_BLOCKED_CONNECT = Reply(421, "4.7.0", "Too many authentication failures, try again later")
SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not allowed for the authenticated user")
USER_RATE_EXCEEDED = Reply(450, "4.7.1", "Sending rate limit exceeded for this user; try later")


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
    relay_domains: frozenset[str]  # normalised here (lower-case A-labels)
    store: StoreMessage  # durable on return; raises SpoolError on failure
    new_queue_id: Callable[[], str]
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    clock: Callable[[], float] = time.time
    sessions: set[InboundSession] = field(default_factory=set)
    role: str = "mx"
    tls: ssl.SSLContext | None = None  # STARTTLS (if protocol_config.starttls) or implicit
    implicit_tls: bool = False  # handshake first, then the greeting (RFC 8314)
    users: UserDirectory | None = None  # None: AUTH cannot succeed
    throttle: AuthThrottle | None = None
    gate: ConnectionGate | None = None
    greeting_delay: float = 0.0  # > 0: hold the greeting for untrusted clients (pregreet)
    add_missing_headers: bool = False  # Date and Message-ID (submission)
    honour_vmta_header: bool = False  # process-x-virtual-mta
    listener_vmta: str | None = None  # the listener's default-virtual-mta
    tls_handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT
    monotonic: Callable[[], float] = time.monotonic  # for the gate and the AUTH throttle
    user_rates: UserRateLimiter = field(default_factory=UserRateLimiter)

    def __post_init__(self) -> None:
        self.relay_domains = normalize_domains(self.relay_domains)
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
        self.chunks: list[bytes] = []
        self.storing: asyncio.Task[None] | None = None
        self.task: asyncio.Task[None] | None = None  # TLS handshake or an AUTH step
        self.last_activity = time.monotonic()
        self.closing = False  # graceful stop requested: close after the current transaction
        self._admitted = False  # counted by the gate: release on close
        self._greet_timer: asyncio.TimerHandle | None = None
        self._sasl: SaslMechanism | None = None
        self._sasl_name = ""
        self._done = asyncio.get_running_loop().create_future()

    @property
    def busy(self) -> bool:
        return self.storing is not None or self.task is not None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:
            return  # the TLS layer of start_tls announcing itself: nothing new
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        ctx = self.ctx
        self.client_ip = str(peer[0]) if peer else ""
        self.client_trusted = client_may_relay(self.client_ip, ctx.relay_networks)
        ctx.sessions.add(self)
        refusal = self._admit()
        if refusal is not None:
            self.conn.refuse(refusal)
            self._flush()
        elif ctx.implicit_tls:
            self._run_task(self._handshake(initial=True), "tls-handshake")
        elif ctx.greeting_delay > 0 and not self.client_trusted:
            self.conn.hold_greeting()
            loop = asyncio.get_running_loop()
            self._greet_timer = loop.call_later(ctx.greeting_delay, self._greet)
        else:
            self._greet()

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        self.conn.receive_data(data)
        self._pump()

    def eof_received(self) -> bool | None:
        self.conn.receive_data(b"")
        self._pump()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        ctx = self.ctx
        ctx.sessions.discard(self)
        if self._admitted and ctx.gate is not None:
            ctx.gate.release(self.client_ip)
        self._admitted = False
        if self._greet_timer is not None:
            self._greet_timer.cancel()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()  # a handshake or AUTH step for a client that is gone
        self._sasl = None
        self.chunks.clear()
        if not self._done.done():
            self._done.set_result(None)

    # -- admission and greeting ---------------------------------------------------------
    def _admit(self) -> Reply | None:
        """None when the connection may go on, else the 421 to send before closing."""
        ctx = self.ctx
        now = ctx.monotonic()
        if ctx.throttle is not None and ctx.throttle.is_blocked(self.client_ip, now):
            log.warning("refused: client=%s blocked after failed AUTH", self.client_ip)
            return AUTH_BLOCKED_CONNECT
        if ctx.gate is not None:
            refusal = ctx.gate.admit(self.client_ip, now)
            if refusal is not None:
                log.warning("refused: client=%s listener=%s: %s", self.client_ip, ctx.name, refusal)
                return refusal
            self._admitted = True
        return None

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
                self.chunks.append(event.data)
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
                self._run_task(self._auth_start(event), "auth")
            elif isinstance(event, smtp.AuthResponse):
                self._run_task(self._auth_step(event.data), "auth")
            elif isinstance(
                event, smtp.MessageAborted | smtp.TransactionReset | smtp.ConnectionClosed
            ):
                self.chunks.clear()
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

    def _run_task(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` with reading paused; the session resumes when it ends."""
        if self.transport is not None:
            self.transport.pause_reading()
        self.task = asyncio.get_running_loop().create_task(self._task_body(work), name=name)

    async def _task_body(self, work: Coroutine[Any, Any, None]) -> None:
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

    # -- MAIL and RCPT ----------------------------------------------------------------------
    def _on_mail(self, event: smtp.MailFrom) -> None:
        self.chunks.clear()
        user = self.conn.authenticated
        users = self.ctx.users
        if user is not None and users is not None and not users.sender_allowed(user, event.sender):
            log.info(
                "sender refused: client=%s user=%s from=<%s>", self.client_ip, user, event.sender
            )
            self.conn.reject(SENDER_NOT_OWNED)
            return
        if (
            user is not None
            and users is not None
            and not self.ctx.user_rates.allow(user, users.max_msg_rate(user), self.ctx.monotonic())
        ):
            log.info("user rate limit: client=%s user=%s", self.client_ip, user)
            self.conn.reject(USER_RATE_EXCEEDED)
            return
        self.conn.accept()

    def _on_rcpt(self, event: smtp.RcptTo) -> None:
        if relay_allowed(
            client_trusted=self.client_trusted or self.conn.authenticated is not None,
            recipient=event.recipient,
            relay_domains=self.ctx.relay_domains,
        ):
            self.conn.accept()
        else:
            log.info("relay denied: client=%s rcpt=<%s>", self.client_ip, event.recipient)
            self.conn.reject(RELAY_DENIED)

    # -- STARTTLS ---------------------------------------------------------------------------
    def _on_starttls(self) -> None:
        if self.ctx.tls is None:  # pragma: no cover - the core only offers it with a context
            self.conn.reject(TLS_UNAVAILABLE)
            return
        self.conn.accept()  # 220, and the core drops whatever was pipelined behind it
        self._flush()
        self._run_task(self._handshake(initial=False), "starttls")

    async def _handshake(self, *, initial: bool) -> None:
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
            log.info("TLS handshake failed: client=%s: %s", self.client_ip, exc or type(exc))
            transport.abort()
            self.connection_lost(None)
            return
        if tls_transport is None:  # pragma: no cover - only for a closed transport
            transport.abort()
            return
        self.transport = tls_transport
        version = tls_transport.get_extra_info("ssl_object")
        log.debug(
            "TLS established: client=%s %s %s",
            self.client_ip,
            version.version() if version is not None else "?",
            (tls_transport.get_extra_info("cipher") or ("?",))[0],
        )
        self.last_activity = time.monotonic()
        if initial:
            self._greet()
        else:
            self.conn.tls_established()

    # -- AUTH -------------------------------------------------------------------------------
    async def _auth_start(self, event: smtp.AuthRequested) -> None:
        ctx = self.ctx
        users = ctx.users
        if users is None:
            self.conn.auth_failure(AUTH_UNAVAILABLE)
            return
        if ctx.throttle is not None and ctx.throttle.is_blocked(self.client_ip, ctx.monotonic()):
            log.warning("auth refused: client=%s is blocked", self.client_ip)
            self.conn.auth_failure(AUTH_BLOCKED)
            return
        users.reload_if_changed()  # `outrider user add` applies without a restart
        mechanism = new_mechanism(event.mechanism, users)
        if mechanism is None:  # pragma: no cover - the core only passes offered names
            self.conn.auth_failure(smtp.AUTH_UNKNOWN_MECHANISM)
            return
        self._sasl = mechanism
        self._sasl_name = event.mechanism
        await self._auth_answer(mechanism.start, event.initial_response)

    async def _auth_step(self, data: bytes) -> None:
        mechanism = self._sasl
        if mechanism is None:  # pragma: no cover - a response always follows a challenge
            self.conn.auth_failure(AUTH_UNAVAILABLE)
            return
        await self._auth_answer(mechanism.step, data)

    async def _auth_answer(
        self, move: Callable[[bytes | None], SaslStep] | Callable[[bytes], SaslStep], data: Any
    ) -> None:
        try:
            # PLAIN and LOGIN verify a password hash: deliberately slow, so off the loop.
            step: SaslStep = await asyncio.to_thread(move, data)
        except Exception:
            log.exception("auth: mechanism %s failed", self._sasl_name)
            self._sasl = None
            self.conn.auth_failure(AUTH_UNAVAILABLE)
            return
        if not step.done:
            self.conn.auth_challenge(step.challenge or b"")
            return
        self._sasl = None
        ctx = self.ctx
        throttle = ctx.throttle
        if step.success and step.username:
            if throttle is not None:
                throttle.record_success(self.client_ip, ctx.monotonic())
            log.info(
                "auth: client=%s user=%s mechanism=%s",
                self.client_ip,
                step.username,
                self._sasl_name,
            )
            self.conn.auth_success(step.username)
            return
        delay = 0.0
        blocked = False
        if throttle is not None:
            now = ctx.monotonic()
            blocked = throttle.record_failure(self.client_ip, now)
            delay = throttle.delay_for(self.client_ip, now)
        log.warning(
            "auth failed: client=%s mechanism=%s%s",
            self.client_ip,
            self._sasl_name,
            " (client now blocked)" if blocked else "",
        )
        if delay > 0:
            await asyncio.sleep(delay)
        self.conn.auth_failure(smtp.AUTH_FAILED)

    # -- the message --------------------------------------------------------------------------
    def _on_complete(self) -> None:
        tx = self.conn.transaction
        if tx is None:  # pragma: no cover - the core guarantees a transaction here
            self.conn.reject(LOCAL_ERROR)
            return
        content = b"".join(self.chunks)
        self.chunks.clear()
        params = tx.params
        ctx = self.ctx
        queue_id = ctx.new_queue_id()
        now = ctx.clock()
        if ctx.add_missing_headers:
            content = self._missing_headers(content, queue_id, now) + content
        envelope, data = assemble(
            queue_id=queue_id,
            sender=tx.sender,
            recipients=[
                AcceptedRecipient(r.address, r.params.notify, r.params.orcpt) for r in tx.recipients
            ],
            content=content,
            ret=params.ret,
            envid=params.envid,
            smtputf8=params.smtputf8,
            body_8bit=params.body in ("8BITMIME", "BINARYMIME"),
            session=SessionFacts(
                client_ip=self.client_ip,
                helo=self.helo,
                by_host=ctx.protocol_config.hostname,
                protocol=self._protocol_name(params.smtputf8),
            ),
            now=now,
            honour_vmta_header=ctx.honour_vmta_header,
            listener_vmta=ctx.listener_vmta,
        )
        user = self.conn.authenticated
        if user is not None:
            envelope.extra["auth"] = user
        # Stop reading while the message is stored: pipelined input waits in the kernel
        # rather than in the protocol core's bounded buffer.
        if self.transport is not None:
            self.transport.pause_reading()
        self.storing = asyncio.get_running_loop().create_task(
            self._store(envelope, data), name=f"store-{queue_id}"
        )

    def _missing_headers(self, content: bytes, queue_id: str, now: float) -> bytes:
        """Date and Message-ID for a submitted message that lacks them (RFC 6409 8)."""
        added = b""
        if header_value(content, "Date") is None:
            added += f"Date: {rfc5322_date(now)}\r\n".encode("ascii")
        if header_value(content, "Message-ID") is None:
            host = self.ctx.protocol_config.hostname
            added += f"Message-ID: <{queue_id}@{host}>\r\n".encode()
        return added

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

    async def _store(self, envelope: Envelope, data: bytes) -> None:
        reply: Reply | None = None
        try:
            await self.ctx.store(envelope, data)
        except SpoolError as exc:
            log.error("spool: cannot store %s: %s", envelope.queue_id, exc)
            reply = exc.reply
        except Exception:
            log.exception("cannot store %s", envelope.queue_id)
            reply = LOCAL_ERROR
        self.storing = None
        if reply is None:
            log.debug(
                "queued %s from=<%s> rcpts=%d size=%d",
                envelope.queue_id,
                envelope.sender,
                len(envelope.recipients),
                envelope.size,
            )
            self.conn.accept(f"OK queued as {envelope.queue_id}")
        else:
            self.conn.reject(reply)
        self._resume()

    # -- lifecycle ------------------------------------------------------------------------
    def idle_for(self, now: float) -> float:
        return now - self.last_activity

    def in_data(self) -> bool:
        return self.conn.in_data

    def timeout(self) -> None:
        """Idle too long: say so and close (RFC 5321 4.5.3.2 server timeout)."""
        log.info("timeout: client=%s", self.client_ip)
        self.chunks.clear()
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
