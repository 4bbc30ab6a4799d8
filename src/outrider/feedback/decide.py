"""What a consumed report means (pure): remote bounces, complaints, suppressions.

Rules (see docs/feedback.md):

- a DSN: one :class:`RemoteBounce` per recipient block whose Action is ``failed``
  (``delayed``, ``delivered``, ``relayed`` and ``expanded`` blocks are ignored); a VERP
  recipient wins over the DSN's, and is then the only one reported;
- an ARF report (any Feedback-Type but ``not-spam``): one complaint (:class:`Feedback`
  ``complained``) and a suppression with reason ``complaint``;
- anything else sent to a VERP address with a status code in its text, or a text the
  bounce classifier puts in a category other than ``other``: a remote bounce with that
  status (``5.0.0`` when it has none); other mail (auto-replies, chatter) is ignored;
- a subject ``unsubscribe:TOKEN`` is an unsubscribe request (:attr:`Decision.unsubscribe`).

A remote bounce in ``bad-mailbox`` or ``bad-domain`` suppresses the recipient for the
original sender's domain; a complaint for the original sender's domain, or globally when
no sender can be found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from outrider.events.types import Feedback, RemoteBounce
from outrider.feedback.reports import (
    ArfReport,
    DsnReport,
    PlainReply,
    Report,
    Returned,
    address_of,
)
from outrider.feedback.verp import Verp
from outrider.suppression.store import scope_of_sender
from outrider.suppression.subscriber import AUTO_CATEGORIES

# (status, diagnostic) -> category; outrider.policy.bounce_category's classifier.
Classify = Callable[[str, str], str]
UNSUBSCRIBE_PREFIX = "unsubscribe:"
NOT_A_COMPLAINT = frozenset({"not-spam"})


@dataclass(frozen=True, slots=True)
class Suppress:
    address: str
    scope: str  # a sender domain, "" for the global list
    reason: str  # "bad-mailbox", "bad-domain" or "complaint"


@dataclass(slots=True)
class Decision:
    bounces: list[RemoteBounce] = field(default_factory=list)
    complaints: list[Feedback] = field(default_factory=list)
    suppress: list[Suppress] = field(default_factory=list)
    unsubscribe: str = ""  # a token from an "unsubscribe:TOKEN" subject
    ignored: str = ""  # why nothing came of it ("" when something did)


@dataclass(frozen=True, slots=True)
class Context:
    """What the consumer knows about the mail beyond its content."""

    to: str  # the envelope recipient at the bounce domain
    verp: Verp | None  # decoded from ``to`` (or, for ARF, from the returned sender)
    hostname: str  # ours: a Message-ID <QUEUEID@hostname> names our queue id
    now: float


def queue_id_of(message_id: str, hostname: str) -> str:
    """The queue id in a Message-ID Outrider added (``<QUEUEID@HOSTNAME>``), else ""."""
    local, at, domain = message_id.strip().strip("<>").rpartition("@")
    if at and local and domain.lower() == hostname.lower():
        return local
    return ""


def decide(report: Report, ctx: Context, classify: Classify) -> Decision:
    if isinstance(report, DsnReport):
        return _dsn(report, ctx, classify)
    if isinstance(report, ArfReport):
        return _arf(report, ctx)
    return _plain(report, ctx, classify)


def _ids(returned: Returned, ctx: Context) -> tuple[str, str]:
    job = ctx.verp.job_id if ctx.verp is not None and ctx.verp.job_id else returned.job_id
    return job, queue_id_of(returned.message_id, ctx.hostname)


def _bounce(
    ctx: Context,
    returned: Returned,
    *,
    recipient: str,
    status: str,
    diagnostic: str,
    mta: str,
    category: str,
    orcpt: str = "",
    action: str = "failed",
) -> RemoteBounce:
    verp = ctx.verp
    job, queue_id = _ids(returned, ctx)
    return RemoteBounce(
        at=ctx.now,
        recipient=verp.recipient if verp is not None else recipient,
        sender=verp.base if verp is not None else ctx.to,
        status=status,
        diagnostic=diagnostic,
        remote_mta=mta,
        category=category,
        action=action,
        orcpt=orcpt,
        job_id=job,
        queue_id=queue_id,
        msg_id=returned.message_id,
        verp=verp is not None,
    )


def _suppress_hard(decision: Decision) -> None:
    for bounce in decision.bounces:
        scope = scope_of_sender(bounce.sender)
        if bounce.category in AUTO_CATEGORIES and scope and bounce.recipient:
            decision.suppress.append(Suppress(bounce.recipient, scope, bounce.category))


def _dsn(report: DsnReport, ctx: Context, classify: Classify) -> Decision:
    decision = Decision()
    failed = [r for r in report.recipients if r.action == "failed"]
    if ctx.verp is not None:
        failed = failed[:1]  # the VERP recipient is the one this bounce is about
    for block in failed:
        status = block.status or "5.0.0"
        decision.bounces.append(
            _bounce(
                ctx,
                report.returned,
                recipient=block.address,
                status=status,
                diagnostic=block.diagnostic,
                mta=block.remote_mta,
                category=classify(status, block.diagnostic),
                orcpt=block.original_recipient,
            )
        )
    decision.bounces = [b for b in decision.bounces if b.recipient]
    if not decision.bounces:
        decision.ignored = "a DSN without a failed recipient"
    _suppress_hard(decision)
    return decision


def _arf(report: ArfReport, ctx: Context) -> Decision:
    decision = Decision()
    if report.feedback_type in NOT_A_COMPLAINT:
        decision.ignored = f"feedback type {report.feedback_type}"
        return decision
    returned = report.returned
    verp = ctx.verp
    recipient = (
        verp.recipient
        if verp is not None
        else report.original_rcpt_to or address_of(returned.to) or returned.to
    )
    if not recipient:
        decision.ignored = "a feedback report naming no recipient"
        return decision
    sender = (
        verp.base
        if verp is not None
        else report.original_mail_from or returned.sender or returned.from_
    )
    scope = scope_of_sender(sender) or scope_of_sender(returned.from_)
    job, queue_id = _ids(returned, ctx)
    decision.complaints.append(
        Feedback(
            at=ctx.now,
            kind="complained",
            recipient=recipient,
            sender_domain=scope,
            job_id=job,
            queue_id=queue_id,
            detail=report.feedback_type or "abuse",
            sender=sender,
            reporter=report.user_agent,
            source_ip=report.source_ip,
            msg_id=returned.message_id,
        )
    )
    decision.suppress.append(Suppress(recipient, scope, "complaint"))
    return decision


def _plain(report: PlainReply, ctx: Context, classify: Classify) -> Decision:
    decision = Decision()
    subject = report.subject.strip()
    if subject.lower().startswith(UNSUBSCRIBE_PREFIX):
        decision.unsubscribe = subject[len(UNSUBSCRIBE_PREFIX) :].strip()
        if not decision.unsubscribe:
            decision.ignored = "an unsubscribe subject without a token"
        return decision
    if ctx.verp is None:
        decision.ignored = "not a DSN or feedback report, and not to a VERP address"
        return decision
    found = report.status
    diagnostic = _diagnostic(report.text, found) or subject
    status = found or "5.0.0"
    category = classify(status if found else "", diagnostic)
    if not found and category == "other":
        decision.ignored = "no failure found in a reply to a VERP address"
        return decision
    if not status.startswith("5"):
        decision.ignored = f"not a permanent failure ({status})"
        return decision
    decision.bounces.append(
        _bounce(
            ctx,
            report.returned,
            recipient="",
            status=status,
            diagnostic=diagnostic,
            mta="",
            category=category,
        )
    )
    _suppress_hard(decision)
    return decision


def _diagnostic(text: str, status: str) -> str:
    """The line holding the status code, else the first lines of the text (one line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if status:
        for line in lines:
            if status in line:
                return line[:500]
    return " ".join(lines[:3])[:500]
