"""Admitting one inbound connection, and releasing it when the connection ends.

Its own class because admission is the one place a session talks to the listener's
per-client limits: the failed-AUTH block (:class:`~outrider.auth.throttle.AuthThrottle`)
and the connection gate (:class:`~outrider.inbound.limits.ConnectionGate`). It
remembers whether the gate counted the connection, so the count is given back exactly
once, and hides whether those limits answer at once (local) or must be awaited (a
shared throttle).

A trusted client (in the listener's ``relay-networks``) is exempt from the gate's
per-client count and rate when the listener says so (``limits-exempt-relay-networks``,
:attr:`~outrider.inbound.session.ListenerContext.limits_exempt_trusted`); the total
still counts it. Its admission never waits for a shared throttle (the total is counted
in this process), so an application server relaying through its MTA pays no round trip
per connection; a failed-AUTH block refuses its connection when the AUTH state is local,
and with shared state refuses its AUTH instead (it may relay without).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from outrider.smtp.replies import Reply
from outrider.throttle import in_background

if TYPE_CHECKING:
    from outrider.inbound.session import ListenerContext

__all__ = ["AUTH_BLOCKED_CONNECT", "Admission"]

log = logging.getLogger("outrider.inbound")

AUTH_BLOCKED_CONNECT = Reply(421, "4.7.0", "Too many authentication failures, try again later")


class Admission:
    """Whether a connection may go on; holds the gate's count until :meth:`release`."""

    def __init__(self, ctx: ListenerContext) -> None:
        self.ctx = ctx
        self.client_ip = ""
        self.admitted = False  # counted by the gate: release on close
        self.admitted_exempt = False

    @property
    def local(self) -> bool:
        """True when :meth:`admit` can answer for any client."""
        gate, throttle = self.ctx.gate, self.ctx.throttle
        return (gate is None or gate.local) and (throttle is None or throttle.local)

    def answers_now(self, trusted: bool) -> bool:
        """True when :meth:`admit` can answer for this client; else await :meth:`admit_async`."""
        return self.local or self.exempt(trusted)

    def exempt(self, trusted: bool) -> bool:
        """Whether a client (``trusted``: in relay-networks) skips the per-client limits."""
        return trusted and self.ctx.limits_exempt_trusted

    def admit(self, client_ip: str, *, trusted: bool = False) -> Reply | None:
        """None when the connection may go on, else the 421 to send before closing.
        ``trusted``: the client is in the listener's relay-networks."""
        self.client_ip = client_ip
        ctx = self.ctx
        now = ctx.monotonic()
        throttle = ctx.throttle
        if throttle is not None and throttle.local and throttle.is_blocked(client_ip, now):
            log.warning("refused: client=%s blocked after failed AUTH", client_ip)
            return AUTH_BLOCKED_CONNECT
        if ctx.gate is not None:
            exempt = self.exempt(trusted)
            refusal = ctx.gate.admit(client_ip, now, exempt=exempt)
            if refusal is not None:
                log.warning("refused: client=%s listener=%s: %s", client_ip, ctx.name, refusal)
                return refusal
            self.admitted = True
            self.admitted_exempt = exempt
        return None

    async def admit_async(
        self, client_ip: str, gone: Callable[[], bool], *, trusted: bool = False
    ) -> Reply | None:
        """:meth:`admit` through the awaitable throttle calls. ``gone`` tells whether
        the client left while the throttle answered: a count taken for it is given
        back at once (the caller, seeing it gone too, does nothing more)."""
        self.client_ip = client_ip
        ctx = self.ctx
        now = ctx.monotonic()
        refusal: Reply | None = None
        if ctx.throttle is not None and await ctx.throttle.is_blocked_async(client_ip, now):
            log.warning("refused: client=%s blocked after failed AUTH", client_ip)
            refusal = AUTH_BLOCKED_CONNECT
        elif ctx.gate is not None:
            refusal = await ctx.gate.admit_async(client_ip, now, exempt=self.exempt(trusted))
            if refusal is not None:
                log.warning("refused: client=%s listener=%s: %s", client_ip, ctx.name, refusal)
            elif gone():
                await ctx.gate.release_async(client_ip)
            else:
                self.admitted = True
        return refusal

    def release(self) -> None:
        """The connection ended: give back the gate's count, if it took one."""
        gate = self.ctx.gate
        if self.admitted and gate is not None:
            if gate.local or self.admitted_exempt:
                gate.release(self.client_ip, exempt=self.admitted_exempt)
            else:
                in_background(gate.release_async(self.client_ip), "gate-release")
        self.admitted = False
        self.admitted_exempt = False
