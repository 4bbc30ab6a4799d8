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
from outrider.throttle import in_background

if TYPE_CHECKING:
    from outrider.inbound.session import ListenerContext

__all__ = ["AUTH_BLOCKED", "AUTH_BUSY", "AUTH_UNAVAILABLE", "AuthExchange"]

log = logging.getLogger("outrider.inbound")

AUTH_UNAVAILABLE = Reply(454, "4.7.0", "Temporary authentication failure")
AUTH_BLOCKED = Reply(454, "4.7.0", "Too many authentication failures, try again later")
AUTH_BUSY = Reply(454, "4.7.0", "Too many authentication attempts in progress, try again later")


class AuthExchange:
    """One session's AUTH: pick the mechanism, step it, answer the protocol core."""

    def __init__(self, ctx: ListenerContext, conn: smtp.ServerConnection) -> None:
        self.ctx = ctx
        self.conn = conn
        self.client_ip = ""
        self._sasl: SaslMechanism | None = None
        self._sasl_name = ""
        self._attempt = False  # counted by the throttle, not ended yet

    def reset(self) -> None:
        """Forget a mechanism in progress (the client is gone); an attempt begun stays
        counted (a client must not escape the failure count by hanging up)."""
        self._sasl = None
        if self._attempt:
            self._attempt = False
            throttle = self.ctx.throttle
            if throttle is not None:
                in_background(
                    throttle.end_attempt_async(self.client_ip, self.ctx.monotonic(), None),
                    "auth-abandoned",
                )

    async def _end_attempt(self, success: bool | None) -> bool:
        """End the counted attempt; True when a failure starts a block."""
        throttle = self.ctx.throttle
        if not self._attempt or throttle is None:
            return False
        self._attempt = False
        return await throttle.end_attempt_async(self.client_ip, self.ctx.monotonic(), success)

    async def start(self, event: smtp.AuthRequested, client_ip: str) -> None:
        self.client_ip = client_ip
        ctx = self.ctx
        users = ctx.users
        if users is None:
            self.conn.auth_failure(AUTH_UNAVAILABLE)
            return
        throttle = ctx.throttle
        await self._end_attempt(None)  # one the client cancelled ("*") stays counted
        if throttle is not None:
            # Counted before the credentials are checked, so parallel guesses cannot
            # all be verified before the first failure is recorded.
            refused = await throttle.begin_attempt_async(client_ip, ctx.monotonic())
            if refused is not None:
                log.warning("auth refused: client=%s is %s", client_ip, refused)
                self.conn.auth_failure(AUTH_BUSY if refused == "busy" else AUTH_BLOCKED)
                return
            self._attempt = True
        users.reload_if_changed()  # `outrider user add` applies without a restart
        mechanism = new_mechanism(event.mechanism, users)
        if mechanism is None:  # pragma: no cover - the core only passes offered names
            await self._end_attempt(None)
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
            await self._end_attempt(None)
            self.conn.auth_failure(AUTH_UNAVAILABLE)
            return
        if not step.done:
            self.conn.auth_challenge(step.challenge or b"")
            return
        self._sasl = None
        ctx = self.ctx
        throttle = ctx.throttle
        if step.success and step.username:
            await self._end_attempt(True)
            log.info(
                "auth: client=%s user=%s mechanism=%s",
                self.client_ip,
                step.username,
                self._sasl_name,
            )
            self.conn.auth_success(step.username)
            return
        delay = 0.0
        blocked = await self._end_attempt(False)
        if throttle is not None:
            delay = await throttle.delay_for_async(self.client_ip, ctx.monotonic())
        log.warning(
            "auth failed: client=%s mechanism=%s%s",
            self.client_ip,
            self._sasl_name,
            " (client now blocked)" if blocked else "",
        )
        if delay > 0:
            await asyncio.sleep(delay)
        self.conn.auth_failure(smtp.AUTH_FAILED)
