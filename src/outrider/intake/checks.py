"""The standard intake checks: sender ownership, per-user rate, relay control.

Each has one job and the reply it refuses with. They log the refusal themselves,
since only they know the detail worth logging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Protocol

from outrider.auth.rates import UserRateLimiter
from outrider.inbound.relay import normalize_domains, relay_allowed
from outrider.intake.pipeline import Check
from outrider.intake.submission import Submission
from outrider.intake.verdict import CONTINUE, Verdict, VerdictResult
from outrider.smtp.replies import RELAY_DENIED, Reply

log = logging.getLogger("outrider.intake")

SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not allowed for the authenticated user")
USER_RATE_EXCEEDED = Reply(450, "4.7.1", "Sending rate limit exceeded for this user; try later")


class SenderRights(Protocol):
    """Which senders a user may use (:class:`outrider.auth.store.UserStore`)."""

    def sender_allowed(self, username: str, sender: str) -> bool: ...


class UserLimits(Protocol):
    """A user's sending rate, e.g. "100/h" (:class:`outrider.auth.store.UserStore`)."""

    def max_msg_rate(self, username: str) -> str | None: ...


class SenderOwnership(Check):
    """An authenticated user may only send as one of its own addresses or domains."""

    def __init__(self, users: SenderRights | None) -> None:
        self.users = users

    def at_mail(self, submission: Submission, sender: str) -> Verdict:
        user = submission.auth_user
        if user is None or self.users is None or self.users.sender_allowed(user, sender):
            return CONTINUE
        log.info("sender refused: client=%s user=%s from=<%s>", submission.client_ip, user, sender)
        return Verdict.reject(SENDER_NOT_OWNED)


class UserRate(Check):
    """A brake on a compromised account: each MAIL of an authenticated user counts
    against that user's ``max_msg_rate``. ``limiter`` holds the per-user state and is
    carried over a reload. With a local throttle the answer is immediate; with a
    shared one it is an awaitable (the session then waits in a task)."""

    def __init__(
        self,
        users: UserLimits | None,
        limiter: UserRateLimiter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = users
        self.limiter = limiter if limiter is not None else UserRateLimiter()
        self.monotonic = monotonic

    def at_mail(self, submission: Submission, sender: str) -> VerdictResult:
        user = submission.auth_user
        if user is None or self.users is None:
            return CONTINUE
        rate, now = self.users.max_msg_rate(user), self.monotonic()
        if self.limiter.local:
            return self._verdict(self.limiter.allow(user, rate, now), submission, user)
        return self._shared(submission, user, rate, now)

    async def _shared(
        self, submission: Submission, user: str, rate: str | None, now: float
    ) -> Verdict:
        return self._verdict(await self.limiter.allow_async(user, rate, now), submission, user)

    @staticmethod
    def _verdict(allowed: bool, submission: Submission, user: str) -> Verdict:
        if allowed:
            return CONTINUE
        log.info("user rate limit: client=%s user=%s", submission.client_ip, user)
        return Verdict.reject(USER_RATE_EXCEEDED)


class Relay(Check):
    """No open relay: a recipient outside ``relay_domains`` needs a client that may
    relay (trusted network or authenticated); see :mod:`outrider.inbound.relay`."""

    def __init__(self, relay_domains: Collection[str]) -> None:
        self.relay_domains = normalize_domains(relay_domains)

    def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> Verdict:
        if relay_allowed(
            client_trusted=submission.may_relay,
            recipient=recipient,
            relay_domains=self.relay_domains,
        ):
            return CONTINUE
        log.info("relay denied: client=%s rcpt=<%s>", submission.client_ip, recipient)
        return Verdict.reject(RELAY_DENIED)
