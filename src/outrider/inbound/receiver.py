"""Listening sockets and the set of live inbound sessions.

Sockets are created here (not by asyncio) so SO_REUSEPORT can let several receiver
processes share one port, and so the listen backlog is large enough for bursts.

An implicit-TLS listener (RFC 8314) serves TLS from its socket: the handshake is done
before the session exists, and the session starts on the TLS transport. (Upgrading the
accepted connection from the session instead loses the race with the client's
ClientHello on uvloop, which starts reading as soon as ``connection_made`` returns.)
Whether a listener is implicit-TLS is therefore fixed until a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time

from outrider.inbound.session import InboundSession, ListenerContext
from outrider.inbound.tls import follow_current

log = logging.getLogger("outrider.inbound")

LISTEN_BACKLOG = 1024
SWEEP_BATCH = 200  # idle sessions timed out per event-loop turn (about 30 ms of work)


def open_listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    infos = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST
    )
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Listener:
    """One listening address and its sessions."""

    def __init__(self, ctx: ListenerContext, sock: socket.socket) -> None:
        self.ctx = ctx
        self.sock = sock
        self.server: asyncio.Server | None = None
        self.implicit_tls = ctx.implicit_tls
        self._server_tls: ssl.SSLContext | None = None  # the socket's, when implicit

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.implicit_tls and self.ctx.tls is not None:  # ListenerContext ensures a context
            self._server_tls = self.ctx.tls
            follow_current(self._server_tls, lambda: self.ctx.tls)  # certificates reloaded
            self.server = await loop.create_server(
                lambda: InboundSession(self.ctx),
                sock=self.sock,
                backlog=LISTEN_BACKLOG,
                ssl=self._server_tls,
                ssl_handshake_timeout=self.ctx.tls_handshake_timeout,
            )
        else:
            self.server = await loop.create_server(
                lambda: InboundSession(self.ctx), sock=self.sock, backlog=LISTEN_BACKLOG
            )
        log.info("listening on %s", self.ctx.name)

    def update(self, ctx: ListenerContext) -> None:
        """Config reload: new sessions use the new context; live ones finish on the old.

        The caller passes the old gate and throttle in ``ctx`` so per-client state
        (connection counts, failed-AUTH records) survives a reload. Implicit TLS cannot
        be switched on or off (the socket does it); the caller checks.
        """
        if ctx.implicit_tls != self.implicit_tls:
            raise ValueError(f"listener {ctx.name}: implicit TLS changes need a restart")
        ctx.sessions = self.ctx.sessions
        self.ctx = ctx
        if self._server_tls is not None and ctx.tls is not None:
            # The certificate follows ctx.tls per handshake; the version floor is the socket's.
            self._server_tls.minimum_version = ctx.tls.minimum_version

    def sweep_timeouts(self) -> None:
        """Close the sessions idle past their timeout, :data:`SWEEP_BATCH` per turn of
        the event loop: thousands expiring together (a flood of idle connections opened
        at once) would otherwise hold up every other session for the whole sweep."""
        now = time.monotonic()
        self._time_out([s for s in self.ctx.sessions if self._expired(s, now)])

    def _expired(self, session: InboundSession, now: float) -> bool:
        limit = self.ctx.data_timeout if session.in_data() else self.ctx.command_timeout
        return not session.busy and not session.conn.closed and session.idle_for(now) > limit

    def _time_out(self, sessions: list[InboundSession]) -> None:
        now = time.monotonic()
        for session in sessions[:SWEEP_BATCH]:
            if session in self.ctx.sessions and self._expired(session, now):  # still idle
                session.timeout()
        if len(sessions) > SWEEP_BATCH:
            asyncio.get_running_loop().call_soon(self._time_out, sessions[SWEEP_BATCH:])

    async def stop(self, timeout: float) -> None:
        """Stop accepting, let in-flight transactions finish (bounded), then cut the rest."""
        if self.server is not None:
            self.server.close()
        sessions = list(self.ctx.sessions)
        for session in sessions:
            session.request_close()
        if sessions:
            waiters = [asyncio.ensure_future(s.wait_closed()) for s in sessions]
            _, pending = await asyncio.wait(waiters, timeout=timeout)
            for session in list(self.ctx.sessions):
                log.warning("shutdown: aborting session from %s", session.client_ip)
                session.abort()
            for waiter in pending:
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)
