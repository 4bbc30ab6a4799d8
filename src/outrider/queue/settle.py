"""Applying one attempt's outcomes to a message's recipients: pure decisions, no I/O.

Given the outcome per recipient, the retry schedule and the clock, it sets each
recipient's new state, decides whether a delay warning or final notices are owed
(marking them on the envelope, so they are persisted with the states), and returns
the events to publish. Bounces and deferrals carry their bounce category
(:mod:`~outrider.policy.bounce_category`); a delivery costs nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from outrider.accounting.records import src_mta
from outrider.dsn.builder import should_bounce, wants_dsn
from outrider.dsn.notices import DELAYED
from outrider.events.types import Bounced, Deferred, Delivered, MessageInfo, RecipientEvent
from outrider.message.envelope import Envelope, RcptStatus, Recipient
from outrider.message.intern import shared
from outrider.policy.bounce_category import BounceClassifier, default_classifier
from outrider.policy.outcome import Outcome, Verdict, expired_status, local_outcome
from outrider.policy.retry import decide_retry

NO_RESULT = local_outcome(451, "4.3.0", "No result for recipient")


@dataclass(slots=True)
class Attempt:
    """Where and under which limits the attempt ran."""

    now: float
    retry_after: Sequence[float]
    bounce_after: float
    delay_warning_after: float | None
    queue: str
    vmta: str
    source_ip: str = ""
    destination_ip: str = ""
    peer_dsn: bool = False
    esmtp: str = ""  # the EHLO keywords the next hop offered (dlvEsmtpAvailable)
    pool: str = ""  # the pool ``vmta`` was chosen from (vmtaPool)
    # The scheduler's, built from [bounce-categories]; None: the shipped rules alone.
    categories: BounceClassifier | None = None


@dataclass(slots=True)
class Settlement:
    events: list[RecipientEvent] = field(default_factory=list)
    delivered: int = 0
    bounced: int = 0
    deferred: int = 0


def message_info(env: Envelope) -> MessageInfo:
    return MessageInfo(
        queue_id=env.queue_id,
        sender=env.sender,
        received_at=env.received_at,
        job_id=env.job_id,
        envid=env.envid or "",
        msg_id=env.msg_id,
        size=env.size,
        source=env.source.value,
        src_mta=src_mta(env.helo, env.client_address),
    )


def settle(
    env: Envelope, recipients: Sequence[Recipient], outcomes: Mapping[int, Outcome], at: Attempt
) -> Settlement:
    """Record the attempt on ``recipients`` (keyed by ``id()`` in ``outcomes``)."""
    result = Settlement()
    info = message_info(env)
    now = at.now
    categorize = (at.categories or default_classifier()).classify
    delay_owed = False
    for rcpt in recipients:
        outcome = outcomes.get(id(rcpt)) or NO_RESULT
        rcpt.attempts += 1
        # Shared: a failure reaching many messages repeats one text (message/intern.py).
        rcpt.last_reply = shared(outcome.diagnostic)
        rcpt.last_mta = shared(outcome.remote_mta)
        common = (now, info, rcpt.address, rcpt.orcpt or "", outcome.status)
        where = (outcome.remote_mta, at.queue, at.vmta, at.source_ip, at.destination_ip)
        event: RecipientEvent
        if outcome.verdict is Verdict.DELIVERED:
            rcpt.status = RcptStatus.DELIVERED
            if not at.peer_dsn and rcpt.notify is not None and wants_dsn(rcpt, "delivered"):
                rcpt.relayed_owed = True
            event = Delivered(*common, rcpt.last_reply, *where)
            result.delivered += 1
        elif outcome.verdict is Verdict.PERMANENT:
            rcpt.status = RcptStatus.BOUNCED
            category = categorize(outcome.status, outcome.diagnostic)
            event = Bounced(*common, rcpt.last_reply, *where, category=category)
            result.bounced += 1
        else:
            decision = decide_retry(
                retry_after=at.retry_after,
                bounce_after=at.bounce_after,
                attempts=rcpt.attempts,
                received_at=env.received_at,
                now=now,
            )
            if decision.expired:
                rcpt.status = RcptStatus.BOUNCED
                rcpt.last_reply = f"{outcome.diagnostic} (expired after {rcpt.attempts} attempts)"
                final = (*common[:4], expired_status(outcome.status))
                category = categorize(final[4], outcome.diagnostic, expired=True)
                event = Bounced(*final, rcpt.last_reply, *where, category=category, expired=True)
                result.bounced += 1
            else:
                rcpt.next_attempt = decision.next_attempt
                delay_owed = delay_owed or owes_delay_warning(env, rcpt, at)
                category = categorize(outcome.status, outcome.diagnostic)
                event = Deferred(
                    *common,
                    rcpt.last_reply,
                    *where,
                    category=category,
                    next_attempt=rcpt.next_attempt,
                )
                result.deferred += 1
        event.esmtp, event.pool = at.esmtp, at.pool
        result.events.append(event)
    if delay_owed:
        env.delay_warned = True
        env.notices += DELAYED
    return result


def owes_delay_warning(env: Envelope, rcpt: Recipient, at: Attempt) -> bool:
    """One "delayed" DSN per message, once it has waited delay-warning-after."""
    after = at.delay_warning_after
    return (
        after is not None
        and at.now - env.received_at >= after
        and not env.delay_warned
        and should_bounce(env)
        and wants_dsn(rcpt, "delayed")
    )
