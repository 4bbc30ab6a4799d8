"""The standard intake checks: sender ownership, per-user rate, address literals,
recipient domain names, relay control, hop count, and the postmaster's address.

Each has one job and the reply it refuses with. They log the refusal themselves,
since only they know the detail worth logging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable
from typing import Protocol

from outrider.auth.rates import UserRateLimiter
from outrider.inbound.relay import normalize_domain, normalize_domains, relay_allowed
from outrider.intake.pipeline import Check
from outrider.intake.submission import MailEnvelope, Submission
from outrider.intake.verdict import CONTINUE, Verdict, VerdictResult
from outrider.message import domains
from outrider.message.headers import count_fields, has_fields
from outrider.smtp.replies import RELAY_DENIED, Reply

log = logging.getLogger("outrider.intake")

SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not allowed for the authenticated user")
USER_RATE_EXCEEDED = Reply(450, "4.7.1", "Sending rate limit exceeded for this user; try later")
LITERAL_SENDER = Reply(550, "5.7.1", "Address literal senders are not accepted from this client")
LITERAL_RECIPIENT = Reply(
    550, "5.7.1", "Address literal recipients are not accepted from this client"
)
TOO_MANY_HOPS = Reply(554, "5.4.6", "Too many hops (mail loop?)")
BAD_RECIPIENT_DOMAIN = Reply(553, "5.1.2", "Recipient domain is not a valid domain name")


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


class PostmasterAddress:
    """This server's postmaster (RFC 5321 section 4.5.1): bare ``Postmaster`` (any
    case) and ``postmaster@`` our host name are its names; ``address`` (``[server]
    postmaster``, by default ``postmaster@`` the host name) is where its mail goes."""

    def __init__(self, hostname: str, address: str | None = None) -> None:
        self.hostname = normalize_domain(hostname)
        self.address = address or f"postmaster@{self.hostname}"

    def names(self, recipient: str) -> bool:
        """Is ``recipient`` (a forward-path without angle brackets) the postmaster?"""
        local, at, domain = recipient.rpartition("@")
        if not at:
            return recipient.lower() == "postmaster"
        return local.lower() == "postmaster" and normalize_domain(domain) == self.hostname


class RecipientDomain(Check):
    """A recipient domain the grammar let through but that cannot be a domain name
    (``☃.test``, a label over 63 octets; see :mod:`outrider.message.domains`) is
    refused at RCPT rather than accepted and bounced at delivery."""

    def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> Verdict:
        _, at, domain = recipient.rpartition("@")
        if not at:
            return CONTINUE  # bare "postmaster"
        try:
            domains.normalize_domain(domain)
        except domains.InvalidDomainError as exc:
            log.info("bad recipient domain: client=%s %s", submission.client_ip, exc)
            return Verdict.reject(BAD_RECIPIENT_DOMAIN)
        return CONTINUE


class Relay(Check):
    """No open relay: a recipient outside ``relay_domains`` needs a client that may
    relay (trusted network or authenticated); see :mod:`outrider.inbound.relay`. The
    postmaster is accepted from anyone (RFC 5321 section 4.5.1)."""

    def __init__(
        self, relay_domains: Collection[str], postmaster: PostmasterAddress | None = None
    ) -> None:
        self.relay_domains = normalize_domains(relay_domains)
        self.postmaster = postmaster

    def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> Verdict:
        if relay_allowed(
            client_trusted=submission.may_relay,
            recipient=recipient,
            relay_domains=self.relay_domains,
        ):
            return CONTINUE
        if self.postmaster is not None and self.postmaster.names(recipient):
            return CONTINUE
        log.info("relay denied: client=%s rcpt=<%s>", submission.client_ip, recipient)
        return Verdict.reject(RELAY_DENIED)


class Postmaster(Check):
    """Mail for the postmaster is queued for ``[server] postmaster``; the recipient's
    ORCPT and NOTIFY stay as the client gave them (:class:`Relay` lets it in)."""

    def __init__(self, postmaster: PostmasterAddress) -> None:
        self.postmaster = postmaster

    def map_recipient(self, submission: Submission, recipient: str) -> str:
        if recipient == self.postmaster.address or not self.postmaster.names(recipient):
            return recipient
        log.info(
            "postmaster: client=%s rcpt=<%s> queued for <%s>",
            submission.client_ip,
            recipient,
            self.postmaster.address,
        )
        return self.postmaster.address


def is_address_literal(address: str) -> bool:
    """``user@[192.0.2.1]`` or ``user@[IPv6:2001:db8::1]`` (RFC 5321 4.1.3)."""
    domain = address.rpartition("@")[2]
    return domain.startswith("[") and domain.endswith("]")


class AddressLiterals(Check):
    """Address-literal senders and recipients only from clients that may relay, or on a
    listener with ``allow-address-literals``. A bounce goes to whatever address the
    sender's literal names, Outrider's own included: an anonymous ``MAIL FROM:<x@[127.0.0.1]>``
    with a recipient that bounces would otherwise start a mail loop."""

    def __init__(self, allowed_listeners: Iterable[str] = ()) -> None:
        self.allowed_listeners = frozenset(allowed_listeners)  # ListenerSettings.name

    def _exempt(self, submission: Submission) -> bool:
        return submission.may_relay or submission.listener in self.allowed_listeners

    def at_mail(self, submission: Submission, sender: str) -> Verdict:
        if not is_address_literal(sender) or self._exempt(submission):
            return CONTINUE
        log.info(
            "address literal sender refused: client=%s from=<%s>", submission.client_ip, sender
        )
        return Verdict.reject(LITERAL_SENDER)

    def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> Verdict:
        if not is_address_literal(recipient) or self._exempt(submission):
            return CONTINUE
        log.info(
            "address literal recipient refused: client=%s rcpt=<%s>",
            submission.client_ip,
            recipient,
        )
        return Verdict.reject(LITERAL_RECIPIENT)


class HopLimit(Check):
    """Loop protection: a message that already carries ``limit`` ``Received:`` fields (or
    more) is refused with 554 5.4.6, so the server that sent it bounces it. Counting reads
    only the header block."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def at_message(self, submission: Submission, envelope: MailEnvelope, content: bytes) -> Verdict:
        if not has_fields(content, "Received", self.limit):
            return CONTINUE
        log.warning(
            "too many hops (%d Received: fields, limit %d): client=%s from=<%s>",
            count_fields(content, "Received"),
            self.limit,
            submission.client_ip,
            envelope.sender,
        )
        return Verdict.reject(TOO_MANY_HOPS)
