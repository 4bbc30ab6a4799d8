"""The asyncio transport for one inbound SMTP session.

A thin adapter: bytes from the socket go into the sans-I/O ServerConnection; the
events that need a decision (relay check, storing the message) are answered here;
replies produced while handling one read are written back in a single write so a
pipelined batch costs one syscall.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from outrider.inbound.relay import IPNetwork, client_may_relay, relay_allowed
from outrider.message.assemble import AcceptedRecipient, SessionFacts, assemble
from outrider.message.envelope import Envelope
from outrider.smtp import server as smtp
from outrider.smtp.replies import LOCAL_ERROR, RELAY_DENIED, Reply
from outrider.spool.base import SpoolError

log = logging.getLogger("outrider.inbound")

StoreMessage = Callable[[Envelope, bytes], Awaitable[None]]


@dataclass
class ListenerContext:
    """Everything a session needs from its listener; replaced as a whole on reload."""

    name: str
    protocol_config: smtp.ServerConfig
    relay_networks: tuple[IPNetwork, ...]
    relay_domains: frozenset[str]
    store: StoreMessage  # durable on return; raises SpoolError on failure
    new_queue_id: Callable[[], str]
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    clock: Callable[[], float] = time.time
    sessions: set[InboundSession] = field(default_factory=set)


class InboundSession(asyncio.Protocol):
    def __init__(self, ctx: ListenerContext) -> None:
        self.ctx = ctx
        self.conn = smtp.ServerConnection(ctx.protocol_config)
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.client_trusted = False
        self.helo = ""
        self.extended = False
        self.chunks: list[bytes] = []
        self.storing: asyncio.Task[None] | None = None
        self.last_activity = time.monotonic()
        self.closing = False  # graceful stop requested: close after the current transaction
        self._done = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.client_ip = str(peer[0]) if peer else ""
        self.client_trusted = client_may_relay(self.client_ip, self.ctx.relay_networks)
        self.ctx.sessions.add(self)
        self.conn.send_greeting()
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        self.conn.receive_data(data)
        self._pump()

    def eof_received(self) -> bool | None:
        self.conn.receive_data(b"")
        self._pump()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.sessions.discard(self)
        self.chunks.clear()
        if not self._done.done():
            self._done.set_result(None)

    # -- driving the protocol core ------------------------------------------------------
    def _pump(self) -> None:
        conn = self.conn
        while self.storing is None:
            event = conn.next_event()
            if event is None:
                break
            if isinstance(event, smtp.MessageData):
                self.chunks.append(event.data)
            elif isinstance(event, smtp.RcptTo):
                self._on_rcpt(event)
            elif isinstance(event, smtp.MailFrom):
                self.chunks.clear()
                conn.accept()
            elif isinstance(event, smtp.MessageComplete):
                self._on_complete()
            elif isinstance(event, smtp.Hello):
                self.helo = event.name
                self.extended = event.extended
                conn.accept()
            elif isinstance(
                event, smtp.MessageAborted | smtp.TransactionReset | smtp.ConnectionClosed
            ):
                self.chunks.clear()
        if self.closing and self.storing is None and conn.transaction is None and not conn.closed:
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

    def _on_rcpt(self, event: smtp.RcptTo) -> None:
        if relay_allowed(
            client_trusted=self.client_trusted,
            recipient=event.recipient,
            relay_domains=self.ctx.relay_domains,
        ):
            self.conn.accept()
        else:
            log.info("relay denied: client=%s rcpt=<%s>", self.client_ip, event.recipient)
            self.conn.reject(RELAY_DENIED)

    def _on_complete(self) -> None:
        tx = self.conn.transaction
        if tx is None:  # pragma: no cover - the core guarantees a transaction here
            self.conn.reject(LOCAL_ERROR)
            return
        content = b"".join(self.chunks)
        self.chunks.clear()
        params = tx.params
        queue_id = self.ctx.new_queue_id()
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
                by_host=self.ctx.protocol_config.hostname,
                protocol=self._protocol_name(params.smtputf8),
            ),
            now=self.ctx.clock(),
        )
        # Stop reading while the message is stored: pipelined input waits in the kernel
        # rather than in the protocol core's bounded buffer.
        if self.transport is not None:
            self.transport.pause_reading()
        self.storing = asyncio.get_running_loop().create_task(
            self._store(envelope, data), name=f"store-{queue_id}"
        )

    def _protocol_name(self, smtputf8: bool) -> str:
        if not self.extended:
            return "SMTP"
        return "UTF8SMTP" if smtputf8 else "ESMTP"

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
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
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
        if self.transport is not None and not self.transport.is_closing():
            self._pump()

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
        if self.storing is None:
            self._pump()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self) -> None:
        await self._done
