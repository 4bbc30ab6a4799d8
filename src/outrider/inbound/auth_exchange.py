"""The SMTP AUTH exchange of one inbound session.

Its own class because it holds state of its own (the SASL mechanism in progress
across challenges) and policy the rest of the session does not need: the user store,
the failed-AUTH throttle and the delay before a failure reply. The session hands it
``AuthRequested`` and ``AuthResponse`` events and runs each call as a task with
reading paused; the answer goes to the protocol core as a challenge, a success or a
failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from outrider.auth.sasl import SaslMechanism, SaslStep, new_mechanism
from outrider.smtp import server as smtp
from outrider.smtp.replies import Reply

if TYPE_CHECKING:
    from outrider.inbound.session import ListenerContext

__all__ = ["AUTH_BLOCKED", "AUTH_UNAVAILABLE", "AuthExchange"]

log = logging.getLogger("outrider.inbound")

AUTH_UNAVAILABLE = Reply(454, "4.7.0", "Temporary authentication failure")
AUTH_BLOCKED = Reply(454, "4.7.0", "Too many authentication failures, try again later")


class AuthExchange:
    """One session's AUTH: pick the mechanism, step it, answer the protocol core."""

    def __init__(self, ctx: ListenerContext, conn: smtp.ServerConnection) -> None:
        self.ctx = ctx
        self.conn = conn
        self.client_ip = ""
        self._sasl: SaslMechanism | None = None
        self._sasl_name = ""

    def reset(self) -> None:
        """Forget a mechanism in progress (the client is gone)."""
        self._sasl = None

    async def start(self, event: smtp.AuthRequested, client_ip: str) -> None:
        self.client_ip = client_ip
        ctx = self.ctx
        users = ctx.users
        if users is None:
            self.conn.auth_failure(AUTH_UNAVAILABLE)
            return
        throttle = ctx.throttle
        now = ctx.monotonic()
        if throttle is not None and await throttle.is_blocked_async(client_ip, now):
            log.warning("auth refused: client=%s is blocked", client_ip)
            self.conn.auth_failure(AUTH_BLOCKED)
            return
        users.reload_if_changed()  # `outrider user add` applies without a restart
        mechanism = new_mechanism(event.mechanism, users)
        if mechanism is None:  # pragma: no cover - the core only passes offered names
            self.conn.auth_failure(smtp.AUTH_UNKNOWN_MECHANISM)
            return
        self._sasl = mechanism
        self._sasl_name = event.mechanism
        await self._answer(mechanism.start, event.initial_response)

    async def step(self, data: bytes) -> None:
        mechanism = self._sasl
        if mechanism is None:  # pragma: no cover - a response always follows a challenge
            self.conn.auth_failure(AUTH_UNAVAILABLE)
            return
        await self._answer(mechanism.step, data)

    async def _answer(
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
                await throttle.record_success_async(self.client_ip, ctx.monotonic())
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
            blocked = await throttle.record_failure_async(self.client_ip, now)
            delay = await throttle.delay_for_async(self.client_ip, now)
        log.warning(
            "auth failed: client=%s mechanism=%s%s",
            self.client_ip,
            self._sasl_name,
            " (client now blocked)" if blocked else "",
        )
        if delay > 0:
            await asyncio.sleep(delay)
        self.conn.auth_failure(smtp.AUTH_FAILED)
