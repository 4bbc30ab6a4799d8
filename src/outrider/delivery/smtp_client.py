"""Asyncio driver for the sans-I/O SMTP client: one outbound SMTP session.

An ``asyncio.Protocol`` feeds received bytes straight into
:class:`~outrider.smtp.client.SmtpClientConnection` and writes whatever it queues
from the same callback, so a non-pipelined dialogue costs no task switch per
command. Each awaited reply is bounded by its RFC 5321 4.5.3.2 phase timeout.

Remote behaviour never raises from :meth:`SmtpSession.send`: losses, timeouts,
421s and garbage become per-recipient replies. :meth:`SmtpSession.connect` raises
:class:`SmtpConnectError` (a site-scope failure: try the next MX / retry later).
When opportunistic STARTTLS fails during the TLS handshake, the connection is
closed and ``SmtpConnectError.tls_failure`` is set, so the caller may reconnect
with ``use_starttls=False`` (as Postfix does for "may" security).

A body read from the spool (:class:`~outrider.spool.reader.StoredBody`) is streamed:
each chunk is written as it is read, and the next one waits until the socket's write
buffer has drained (the data-block timeout bounds a peer that stops reading). A body
that cannot be read (a damaged spool file) aborts the connection before its end is
sent, and :meth:`SmtpSession.send` raises.

With a :class:`~outrider.delivery.tls_policy.TlsRequirement` in mode ``"required"``
there is no clear-text fallback: no STARTTLS offered (or STARTTLS refused) raises
with reply ``451 4.7.4``, a failed handshake or certificate verification with
``451 4.7.5``; both set ``tls_failure`` and ``tls_reason``, and are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from outrider.delivery.tls_policy import TlsRequirement, client_context
from outrider.message.envelope import Envelope, Recipient
from outrider.smtp.client import (
    Extensions,
    Phase,
    SmtpClientConnection,
    State,
    StreamedContent,
    Transaction,
)
from outrider.smtp.replies import Reply
from outrider.spool.reader import Body, StoredBody

__all__ = [
    "RecipientResult",
    "SmtpConnectError",
    "SmtpSession",
    "SmtpTimeouts",
    "TransactionResult",
]

log = logging.getLogger("outrider.delivery.tls")


@dataclass(frozen=True, slots=True)
class SmtpTimeouts:
    """Seconds to wait per phase; defaults are RFC 5321 4.5.3.2."""

    connect: float = 30
    greeting: float = 300
    ehlo: float = 300
    mail: float = 300
    rcpt: float = 300
    data_init: float = 120
    data_block: float = 180  # no write progress while sending the content
    data_done: float = 600
    rset: float = 60
    quit: float = 10
    starttls: float = 60  # STARTTLS reply and, separately, the TLS handshake

    def for_phase(self, phase: Phase) -> float:
        timeout: float = getattr(self, _PHASE_TIMEOUTS[phase])
        return timeout


# The SmtpTimeouts field that bounds each phase: looked up once per awaited reply, so
# a table made once rather than a dict of every timeout built per call.
_PHASE_TIMEOUTS: dict[Phase, str] = {
    Phase.GREETING: "greeting",
    Phase.EHLO: "ehlo",
    Phase.HELO: "ehlo",
    Phase.STARTTLS: "starttls",
    Phase.RSET: "rset",
    Phase.MAIL: "mail",
    Phase.RCPT: "rcpt",
    Phase.DATA_INIT: "data_init",
    Phase.DATA_DONE: "data_done",
    Phase.QUIT: "quit",
}


class SmtpConnectError(Exception):
    """No usable session: connect failure, refused greeting/EHLO, TLS failure, timeout.

    ``reply`` is the server's refusal when there was one (e.g. a 421 or 554 greeting),
    or for a failed TLS requirement the local ``451 4.7.4``/``4.7.5`` reason.
    ``tls_reason`` says what went wrong with TLS ("STARTTLS not offered",
    "certificate verify failed: ...").
    """

    def __init__(
        self,
        message: str,
        *,
        address: str,
        host: str,
        reply: Reply | None = None,
        tls_failure: bool = False,
        tls_reason: str = "",
    ) -> None:
        super().__init__(message)
        self.address = address
        self.host = host
        self.reply = reply
        self.tls_failure = tls_failure
        self.tls_reason = tls_reason


@dataclass(slots=True)
class RecipientResult:
    recipient: Recipient
    reply: Reply


@dataclass(slots=True)
class TransactionResult:
    """Per-recipient final replies, in the order given to :meth:`SmtpSession.send`.

    ``connection_lost`` is true when the session ended during the transaction (loss,
    timeout, 421, protocol error): the session is then unusable.
    """

    results: list[RecipientResult]
    data_reply: Reply | None
    connection_lost: bool
    mail_reply: Reply | None = None  # the reply to MAIL FROM (for reply-pattern phases)


class _Interrupted(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


_opportunistic: ssl.SSLContext | None = None


def opportunistic_tls_context() -> ssl.SSLContext:
    """Unverified client context for opportunistic STARTTLS (RFC 7435): encrypt, don't pin."""
    global _opportunistic
    if _opportunistic is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        _opportunistic = ctx
    return _opportunistic


class _ClientProtocol(asyncio.Protocol):
    """Pumps bytes between the transport and the state machine and wakes the waiting task."""

    def __init__(self, core: SmtpClientConnection) -> None:
        self.core = core
        self.transport: asyncio.Transport | None = None
        # Tasks waiting for progress: a send() and, pipelined behind it, the next one.
        self.waiters: set[asyncio.Future[bool]] = set()
        self.accept_waiters = 0  # of them, wait_accepting() calls
        self._flush_timer: asyncio.TimerHandle | None = None
        self.lost = False
        self.lost_detail = ""
        self.paused = False  # the transport's write buffer is over its high-water mark
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        core = self.core
        if core.receive_data(data) or core.state is State.FAILED:
            if core.state is State.TLS_PENDING and self.transport is not None:
                self.transport.pause_reading()  # nothing more may be read in clear
            if self.accept_waiters and core.can_overlap:
                # The next message is about to be pipelined behind this end of data: let
                # its commands join the same write, or a server that answers each read
                # separately may sit on its second answer (Nagle against delayed ACK).
                self.flush_soon()
            else:
                self.flush()
            self.wake()

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.mark_lost(str(exc) if exc else "connection closed by peer")

    def mark_lost(self, detail: str) -> None:
        if not self.lost:
            self.lost = True
            self.lost_detail = detail
        if not self.closed.done():
            self.closed.set_result(None)
        self.wake()

    def flush_soon(self) -> None:
        """Flush within 2 ms unless a :meth:`flush` comes first."""
        if self._flush_timer is None:
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(_COALESCE_DELAY, self.flush)

    def flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        out = self.core.data_to_send()
        if out and self.transport is not None and not self.lost:
            self.transport.writelines(out)

    def wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(True)


# How long the end of a message may wait for the next message's commands to share its write.
_COALESCE_DELAY = 0.002


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


class SmtpSession:
    """One connected, greeted and EHLO'd SMTP session, reusable for several messages.

    One transaction at a time, except that with PIPELINING the next :meth:`send` may
    start once :meth:`wait_accepting` says so (the current message's end of data is
    out): its commands follow that end of data in the same round trip.
    """

    def __init__(
        self,
        proto: _ClientProtocol,
        *,
        address: str,
        host: str,
        timeouts: SmtpTimeouts,
    ) -> None:
        self._proto = proto
        self._core = proto.core
        self._address = address
        self._host = host
        self._timeouts = timeouts
        self._closing = False
        self._tls_verified = False
        self._tls_source = "policy"

    @classmethod
    async def connect(
        cls,
        address: str,
        port: int,
        *,
        helo_name: str,
        timeouts: SmtpTimeouts,
        source_address: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        use_starttls: bool = True,
        server_hostname: str | None = None,
        tls: TlsRequirement | None = None,
    ) -> SmtpSession:
        """Connect to the IP literal ``address`` (never resolved), greet and EHLO.

        Without ``tls``: STARTTLS is used when offered and ``use_starttls``;
        ``tls_context`` defaults to :func:`opportunistic_tls_context`. A refused
        STARTTLS command continues in clear; a failed TLS handshake raises with
        ``tls_failure=True``.

        With ``tls`` (which replaces ``use_starttls``): mode ``"none"`` never starts
        TLS, ``"opportunistic"`` behaves as above, ``"required"`` raises
        :class:`SmtpConnectError` (``tls_failure``, reply 4.7.4/4.7.5) instead of
        continuing in clear. The context is :func:`client_context` of ``tls`` unless
        ``tls_context`` is given; ``server_hostname`` is the name verified for
        ``"ca+hostname"`` and sent as SNI.
        """
        loop = asyncio.get_running_loop()
        host = server_hostname or address
        required = False
        if tls is not None:
            use_starttls = tls.mode != "none"
            required = tls.required
            if tls_context is None and use_starttls:
                try:
                    tls_context = client_context(tls)
                except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                    reason = f"cannot load CA file {tls.ca_file}: {exc}"
                    log.error("TLS for %s [%s]: %s", host, address, reason)
                    raise SmtpConnectError(
                        f"{address}: {reason}",
                        address=address,
                        host=host,
                        reply=Reply(451, "4.3.5", f"TLS misconfigured: {reason}"),
                        tls_failure=True,
                        tls_reason=reason,
                    ) from exc
        proto = _ClientProtocol(SmtpClientConnection(helo_name))
        local_addr = (source_address, 0) if source_address else None
        try:
            async with asyncio.timeout(timeouts.connect):
                await loop.create_connection(
                    lambda: proto, address, port, local_addr=local_addr, flags=socket.AI_NUMERICHOST
                )
        except TimeoutError:
            raise SmtpConnectError(
                f"timeout connecting to {address}:{port}", address=address, host=host
            ) from None
        except OSError as exc:
            raise SmtpConnectError(
                f"cannot connect to {address}:{port}: {exc}", address=address, host=host
            ) from exc
        session = cls(proto, address=address, host=host, timeouts=timeouts)
        session._tls_source = tls.source if tls is not None else "policy"
        try:
            await session._handshake(tls_context, use_starttls, server_hostname, required)
        except BaseException:
            await session._drop()
            raise
        return session

    # -- properties ----------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Connected, idle and not closing: another :meth:`send` may start."""
        return not self._proto.lost and not self._closing and self._core.state is State.READY

    @property
    def accepting(self) -> bool:
        """Another :meth:`send` may start now: idle, or pipelined behind the current one."""
        if self._proto.lost or self._closing:
            return False
        return self._core.state is State.READY or self._core.can_overlap

    async def wait_accepting(self) -> bool:
        """Wait until the next :meth:`send` may be pipelined behind the one in flight
        (:attr:`SmtpClientConnection.can_overlap`); False as soon as the session cannot
        take one. No timeout of its own: the caller races it with the running
        :meth:`send`, which applies the phase timeouts and reports any failure."""
        core = self._core
        proto = self._proto
        loop = asyncio.get_running_loop()
        while not core.can_overlap:
            if proto.lost or self._closing or core.state is State.FAILED:
                return False
            fut: asyncio.Future[bool] = loop.create_future()
            proto.waiters.add(fut)
            proto.accept_waiters += 1
            try:
                await fut
            finally:
                proto.waiters.discard(fut)
                proto.accept_waiters -= 1
        return not proto.lost

    @property
    def peer_address(self) -> str:
        return self._address

    @property
    def remote_host(self) -> str:
        """The name given as ``server_hostname``, else the address."""
        return self._host

    @property
    def local_address(self) -> str:
        sockname = self._extra("sockname")
        return str(sockname[0]) if sockname else ""

    @property
    def tls_version(self) -> str | None:
        ssl_object = self._extra("ssl_object")
        return str(ssl_object.version()) if ssl_object is not None else None

    @property
    def tls_cipher(self) -> str | None:
        ssl_object = self._extra("ssl_object")
        cipher = ssl_object.cipher() if ssl_object is not None else None
        return str(cipher[0]) if cipher else None

    @property
    def tls_verified(self) -> bool:
        """TLS is active and the peer's certificate chain was verified (host name too
        when the context checks host names)."""
        return self._tls_verified

    @property
    def extensions(self) -> Extensions:
        return self._core.extensions

    @property
    def greeting(self) -> Reply | None:
        return self._core.greeting

    @property
    def ehlo_reply(self) -> Reply | None:
        """The server's 250 answer to EHLO (HELO), after STARTTLS the second one."""
        return self._core.ehlo_reply

    @property
    def transactions(self) -> int:
        """Transactions completed on this session (for connection reuse limits)."""
        return self._core.transactions

    def _extra(self, name: str) -> Any:
        transport = self._proto.transport
        return transport.get_extra_info(name) if transport is not None else None

    # -- operations ----------------------------------------------------------

    async def send(
        self, envelope: Envelope, recipients: Sequence[Recipient], body: Body
    ) -> TransactionResult:
        """Deliver ``body`` to ``recipients``; never raises for remote behaviour."""
        rcpts = list(recipients)
        if self._core.state is State.TRANSACTION and not self._core.can_overlap:
            raise RuntimeError("a transaction is already in progress on this session")
        if not self.accepting:
            detail = self._proto.lost_detail or "session not usable"
            reply = Reply(451, "4.4.2", f"Connection lost: {detail}")
            return TransactionResult([RecipientResult(r, reply) for r in rcpts], None, True)
        core = self._core
        content = body if isinstance(body, bytes) else StreamedContent(body.size)
        tx = core.start_transaction(envelope, rcpts, content)
        self._proto.flush()
        try:
            if isinstance(body, StoredBody):
                await self._until(lambda: tx.done or tx.wants_content)
                if tx.wants_content and not tx.done:
                    await self._stream(tx, body)
            await self._until(lambda: tx.done)
        except _Interrupted as exc:
            core.abort(exc.reply)
        except BaseException:
            core.abort(Reply(451, "4.4.2", "Connection lost: delivery cancelled"))
            self._abort_transport()
            raise
        lost = core.state is State.FAILED
        if lost:
            self._abort_transport()
        results = [
            RecipientResult(r, reply) for r, reply in zip(rcpts, tx.final_replies(), strict=True)
        ]
        return TransactionResult(results, tx.data_reply, lost, tx.mail_reply)

    async def close(self) -> None:
        """QUIT (bounded by ``timeouts.quit``) and close the socket; never raises."""
        if self._closing:
            await self._wait_closed()
            return
        self._closing = True
        core = self._core
        try:
            # close() must not raise: any failure here just means no polite goodbye.
            with contextlib.suppress(Exception):
                if not self._proto.lost and core.state in (State.READY, State.REFUSED):
                    core.quit()
                    self._proto.flush()
                    await self._until(lambda: core.state is not State.QUITTING)
        except BaseException:
            self._abort_transport()  # cancelled: drop without waiting
            raise
        await self._drop()

    # -- internals -----------------------------------------------------------

    async def _stream(self, tx: Transaction, body: StoredBody) -> None:
        """Write ``body`` chunk by chunk, each once the previous one has drained, then
        its end. Stops early when the transaction ends meanwhile (the peer answered or
        the connection failed)."""
        core = self._core
        proto = self._proto
        async with contextlib.aclosing(body.chunks()) as chunks:
            async for chunk in chunks:
                if tx.done:
                    return
                if proto.lost:
                    raise _Interrupted(Reply(451, "4.4.2", f"Connection lost: {proto.lost_detail}"))
                core.send_content(chunk)
                proto.flush()
                await self._drained(tx)
        if not tx.done:
            core.end_content()
            proto.flush()
            proto.wake()  # a wait_accepting() may pipeline the next message now

    async def _drained(self, tx: Transaction) -> None:
        """Wait while the transport's write buffer is over its high-water mark, bounded by
        the data-block timeout without progress."""
        proto = self._proto
        loop = asyncio.get_running_loop()
        while proto.paused and not proto.lost and not tx.done:
            buffered = self._write_backlog()
            fut: asyncio.Future[bool] = loop.create_future()
            proto.waiters.add(fut)
            handle = loop.call_later(self._timeouts.data_block, _expire, fut)
            try:
                progressed = await fut
            finally:
                handle.cancel()
                proto.waiters.discard(fut)
            if progressed or self._write_backlog() < buffered:
                continue
            self._abort_transport()
            raise _Interrupted(Reply(451, "4.4.2", "Timeout sending message data"))

    async def _handshake(
        self,
        tls_context: ssl.SSLContext | None,
        use_starttls: bool,
        server_hostname: str | None,
        required: bool,
    ) -> None:
        core = self._core
        await self._until_ready((State.GREETING, State.HANDSHAKE))
        if not use_starttls:
            return
        if not core.extensions.starttls:
            if required:
                await self.close()
                raise self._tls_error("STARTTLS not offered", "4.7.4", required)
            return
        core.starttls()
        self._proto.flush()
        await self._until_ready((State.STARTTLS,), accept=(State.READY, State.TLS_PENDING))
        if core.state is State.READY:
            if required:
                await self.close()
                raise self._tls_error(f"STARTTLS refused: {core.starttls_reply}", "4.7.4", required)
            return  # STARTTLS refused: continue in clear (opportunistic)
        ctx = tls_context if tls_context is not None else opportunistic_tls_context()
        transport = self._proto.transport
        assert transport is not None
        sni = (
            server_hostname if server_hostname else (self._address if ctx.check_hostname else None)
        )
        loop = asyncio.get_running_loop()
        try:
            tls_transport = await loop.start_tls(
                transport,
                self._proto,
                ctx,
                server_hostname=sni,
                ssl_handshake_timeout=self._timeouts.starttls,
            )
        except ssl.SSLCertVerificationError as exc:
            # start_tls closed the raw transport; our protocol is no longer told about it.
            reason = f"certificate verify failed: {exc.verify_message}"
            self._proto.mark_lost(f"TLS handshake failed: {reason}")
            await asyncio.sleep(0)
            raise self._tls_error(reason, "4.7.5", required) from exc
        except (OSError, TimeoutError, ValueError) as exc:
            reason = f"TLS handshake failed: {str(exc) or type(exc).__name__}"
            self._proto.mark_lost(reason)
            await asyncio.sleep(0)
            raise self._tls_error(reason, "4.7.5", required) from exc
        if tls_transport is None:
            self._proto.mark_lost("TLS handshake failed: transport closed")
            raise self._tls_error("TLS handshake failed: transport closed", "4.7.5", required)
        self._proto.transport = tls_transport
        self._tls_verified = ctx.verify_mode == ssl.CERT_REQUIRED
        core.tls_established()
        self._proto.flush()
        await self._until_ready((State.HANDSHAKE,))

    def _tls_error(self, reason: str, status: str, required: bool) -> SmtpConnectError:
        """Log a TLS failure and build the error; ``required`` failures may not fall back."""
        text = "TLS required" if required else "opportunistic TLS failed"
        log.log(
            logging.WARNING if required else logging.INFO,
            "%s for %s [%s] (%s): %s",
            text,
            self._host,
            self._address,
            self._tls_source,
            reason,
        )
        what = "Security features not supported" if status == "4.7.4" else "Cryptographic failure"
        reply = Reply(451, status, f"{what}: {self._host}: {reason}")
        return self._connect_error(reason, reply=reply, tls_failure=True, tls_reason=reason)

    async def _until_ready(
        self, waiting: tuple[State, ...], accept: tuple[State, ...] = (State.READY,)
    ) -> None:
        core = self._core
        try:
            await self._until(lambda: core.state not in waiting)
        except _Interrupted as exc:
            raise self._connect_error(exc.reply.text, reply=None) from None
        if core.state not in accept:
            error = core.error
            if core.state is State.REFUSED:
                await self.close()
            raise self._connect_error(
                f"session refused: {error}" if error else f"unexpected state {core.state.value}",
                reply=error if core.error_from_peer else None,
            )

    def _connect_error(
        self,
        message: str,
        *,
        reply: Reply | None = None,
        tls_failure: bool = False,
        tls_reason: str = "",
    ) -> SmtpConnectError:
        return SmtpConnectError(
            f"{self._address}: {message}",
            address=self._address,
            host=self._host,
            reply=reply,
            tls_failure=tls_failure,
            tls_reason=tls_reason,
        )

    async def _until(self, done: Callable[[], bool]) -> None:
        """Wait until ``done()``; each awaited reply bounded by its phase timeout."""
        proto = self._proto
        core = self._core
        loop = asyncio.get_running_loop()
        while not done():
            if core.state is State.FAILED:
                return
            if proto.lost:
                raise _Interrupted(Reply(451, "4.4.2", f"Connection lost: {proto.lost_detail}"))
            phase = core.awaiting
            if phase is None:
                raise _Interrupted(Reply(451, "4.4.2", "Connection lost: no reply expected"))
            buffered = self._write_backlog()
            sending = phase is Phase.DATA_DONE and buffered > 0
            timeout = self._timeouts.data_block if sending else self._timeouts.for_phase(phase)
            fut: asyncio.Future[bool] = loop.create_future()
            proto.waiters.add(fut)
            handle = loop.call_later(timeout, _expire, fut)
            try:
                progressed = await fut
            finally:
                handle.cancel()
                proto.waiters.discard(fut)
            if progressed:
                continue
            if sending and self._write_backlog() < buffered:
                continue  # no reply yet, but the peer is still reading the content
            what = "sending message data" if sending else f"waiting for {phase.value} reply"
            self._abort_transport()
            raise _Interrupted(Reply(451, "4.4.2", f"Timeout {what}"))

    def _write_backlog(self) -> int:
        transport = self._proto.transport
        if transport is None or transport.is_closing():
            return 0
        return transport.get_write_buffer_size()

    def _abort_transport(self) -> None:
        transport = self._proto.transport
        if transport is not None and not self._proto.lost:
            transport.abort()

    async def _drop(self) -> None:
        transport = self._proto.transport
        if transport is not None and not transport.is_closing():
            transport.close()
        await self._wait_closed()

    async def _wait_closed(self) -> None:
        proto = self._proto
        if proto.closed.done():
            return
        try:
            async with asyncio.timeout(self._timeouts.quit):
                await asyncio.shield(proto.closed)
        except TimeoutError:
            if proto.transport is not None:
                proto.transport.abort()
            await asyncio.sleep(0)
