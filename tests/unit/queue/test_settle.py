"""settle(): one attempt's outcomes applied to recipients, with no scheduler around it.

Pure: each test builds an envelope, the outcomes and an :class:`Attempt`, and checks the
recipient states, the counts and every field of the events the attempt publishes.
"""

from __future__ import annotations

import pytest

from outrider.dsn.notices import DELAYED, FAILED
from outrider.events.types import Bounced, Deferred, Delivered
from outrider.message.envelope import Envelope, Notify, RcptStatus, Recipient, Source
from outrider.policy.bounce_category import BounceClassifier, parse_rules
from outrider.policy.outcome import Outcome, Scope, Verdict
from outrider.queue.settle import NO_RESULT, Attempt, message_info, settle

T0 = 1_000_000.0
HOUR = 3600.0


def envelope(*rcpts: Recipient, sender: str = "s@sender.test", received_at: float = T0) -> Envelope:
    return Envelope(
        queue_id="Q1",
        sender=sender,
        recipients=list(rcpts),
        received_at=received_at,
        size=1234,
        envid="ENV-1",
        helo="client.test",
        client_address="127.0.0.5",
        job_id="job-7",
        msg_id="<m@x.test>",
        source=Source.API,
    )


def attempt(now: float, *, delay: float | None = None, peer_dsn: bool = False) -> Attempt:
    return Attempt(
        now=now,
        retry_after=(60.0, 600.0),
        bounce_after=HOUR,
        delay_warning_after=delay,
        queue="example.org/vmta-a",
        vmta="vmta-a",
        source_ip="127.0.0.2",
        destination_ip="127.0.0.3",
        peer_dsn=peer_dsn,
        esmtp="PIPELINING SIZE",
        pool="pool-1",
    )


def outcome(verdict: Verdict, status: str, text: str) -> Outcome:
    return Outcome(verdict, Scope.RECIPIENT, status, text, remote_mta="mx.example.org")


OK = outcome(Verdict.DELIVERED, "2.0.0", "250 2.0.0 queued as X")
GONE = outcome(Verdict.PERMANENT, "5.1.1", "550 5.1.1 no such user")
LATER = outcome(Verdict.TRANSIENT, "4.2.2", "452 4.2.2 mailbox full")


def test_message_info_carries_the_envelope() -> None:
    info = message_info(envelope(Recipient("a@example.org")))
    assert (info.queue_id, info.sender, info.received_at) == ("Q1", "s@sender.test", T0)
    assert (info.job_id, info.envid, info.msg_id, info.size) == (
        "job-7",
        "ENV-1",
        "<m@x.test>",
        1234,
    )
    assert (info.source, info.src_mta) == ("api", "client.test (127.0.0.5)")
    env = envelope(Recipient("a@example.org"))
    env.envid = None
    assert message_info(env).envid == ""


def test_a_delivery() -> None:
    rcpt = Recipient("a@example.org", orcpt="rfc822;a@example.org")
    env = envelope(rcpt)
    result = settle(env, [rcpt], {id(rcpt): OK}, attempt(T0 + 5))
    assert (result.delivered, result.bounced, result.deferred) == (1, 0, 0)
    assert rcpt.status is RcptStatus.DELIVERED
    assert (rcpt.attempts, rcpt.last_reply, rcpt.last_mta) == (1, OK.diagnostic, "mx.example.org")
    assert rcpt.relayed_owed is False  # no NOTIFY given: no success notice
    [event] = result.events
    assert type(event) is Delivered
    assert (event.at, event.recipient, event.orcpt, event.status) == (
        T0 + 5,
        "a@example.org",
        "rfc822;a@example.org",
        "2.0.0",
    )
    assert (event.diagnostic, event.remote_mta, event.queue, event.vmta) == (
        OK.diagnostic,
        "mx.example.org",
        "example.org/vmta-a",
        "vmta-a",
    )
    assert (event.source_ip, event.destination_ip) == ("127.0.0.2", "127.0.0.3")
    assert (event.esmtp, event.pool, event.category) == ("PIPELINING SIZE", "pool-1", "")
    assert event.message == message_info(env)


@pytest.mark.parametrize(
    ("notify", "peer_dsn", "owed"),
    [
        (Notify.SUCCESS, False, True),
        (Notify.SUCCESS | Notify.FAILURE, False, True),
        (Notify.SUCCESS, True, False),  # the next hop speaks DSN: it reports the delivery
        (Notify.FAILURE, False, False),
        (Notify.NEVER, False, False),
    ],
)
def test_a_delivery_owes_a_relayed_notice_only_when_asked(
    notify: Notify, peer_dsn: bool, owed: bool
) -> None:
    rcpt = Recipient("a@example.org", notify=notify)
    settle(envelope(rcpt), [rcpt], {id(rcpt): OK}, attempt(T0, peer_dsn=peer_dsn))
    assert rcpt.relayed_owed is owed


def test_a_permanent_failure_bounces_with_its_category() -> None:
    rcpt = Recipient("a@example.org")
    result = settle(envelope(rcpt), [rcpt], {id(rcpt): GONE}, attempt(T0 + 5))
    assert (result.delivered, result.bounced, result.deferred) == (0, 1, 0)
    assert rcpt.status is RcptStatus.BOUNCED
    [event] = result.events
    assert type(event) is Bounced
    assert (event.status, event.diagnostic, event.expired) == ("5.1.1", GONE.diagnostic, False)
    assert event.category == "bad-mailbox"
    assert (event.esmtp, event.pool, event.orcpt) == ("PIPELINING SIZE", "pool-1", "")


def test_a_transient_failure_defers_to_the_next_slot() -> None:
    rcpt = Recipient("a@example.org")
    result = settle(envelope(rcpt), [rcpt], {id(rcpt): LATER}, attempt(T0 + 5))
    assert (result.delivered, result.bounced, result.deferred) == (0, 0, 1)
    assert rcpt.status is RcptStatus.PENDING
    assert rcpt.next_attempt == T0 + 5 + 60.0
    [event] = result.events
    assert type(event) is Deferred
    assert (event.status, event.diagnostic, event.next_attempt) == (
        "4.2.2",
        LATER.diagnostic,
        T0 + 65.0,
    )
    assert event.category == "quota-issues"
    assert (event.esmtp, event.pool) == ("PIPELINING SIZE", "pool-1")
    # the second failure follows the second step of the schedule
    settle(envelope(rcpt), [rcpt], {id(rcpt): LATER}, attempt(T0 + 100))
    assert (rcpt.attempts, rcpt.next_attempt) == (2, T0 + 700.0)


def test_a_transient_failure_past_bounce_after_expires() -> None:
    rcpt = Recipient("a@example.org", attempts=4)
    result = settle(envelope(rcpt), [rcpt], {id(rcpt): LATER}, attempt(T0 + HOUR))
    assert (result.delivered, result.bounced, result.deferred) == (0, 1, 0)
    assert rcpt.status is RcptStatus.BOUNCED
    assert rcpt.last_reply == f"{LATER.diagnostic} (expired after 5 attempts)"
    [event] = result.events
    assert type(event) is Bounced
    assert (event.status, event.expired, event.diagnostic) == ("4.4.7", True, rcpt.last_reply)
    assert event.category == "message-expired"
    assert (event.recipient, event.remote_mta, event.queue) == (
        "a@example.org",
        "mx.example.org",
        "example.org/vmta-a",
    )
    assert (event.esmtp, event.pool) == ("PIPELINING SIZE", "pool-1")


def test_a_recipient_without_an_outcome_is_deferred_as_no_result() -> None:
    rcpt = Recipient("a@example.org")
    result = settle(envelope(rcpt), [rcpt], {}, attempt(T0))
    assert result.deferred == 1
    assert rcpt.last_reply == NO_RESULT.diagnostic == "451 4.3.0 No result for recipient"
    assert result.events[0].status == "4.3.0"


def test_counts_add_up_over_mixed_outcomes() -> None:
    rcpts = [Recipient(f"{x}@example.org") for x in "abcdef"]
    results = (OK, GONE, LATER) * 2
    outcomes = {id(r): o for r, o in zip(rcpts, results, strict=True)}
    result = settle(envelope(*rcpts), rcpts, outcomes, attempt(T0))
    assert (result.delivered, result.bounced, result.deferred) == (2, 2, 2)
    assert [e.recipient for e in result.events] == [r.address for r in rcpts]


def test_expiries_count_as_bounces() -> None:
    a, b = Recipient("a@example.org"), Recipient("b@example.org")
    env = envelope(a, b)
    result = settle(env, [a, b], {id(a): LATER, id(b): LATER}, attempt(T0 + HOUR))
    assert (result.bounced, result.deferred) == (2, 0)


def test_the_configured_categories_are_used() -> None:
    rcpt = Recipient("a@example.org")
    at = attempt(T0)
    at.categories = BounceClassifier.with_extra(parse_rules("/no such user/ policy-related\n", "t"))
    result = settle(envelope(rcpt), [rcpt], {id(rcpt): GONE}, at)
    assert result.events[0].category == "policy-related"


# --- the delayed notice ---


def deferred_once(
    now: float, *, delay: float | None, sender: str = "s@sender.test", warned: bool = False
) -> Envelope:
    rcpt = Recipient("a@example.org")
    env = envelope(rcpt, sender=sender)
    env.delay_warned = warned
    settle(env, [rcpt], {id(rcpt): LATER}, attempt(now, delay=delay))
    return env


def test_a_delay_warning_is_owed_once_delay_warning_after_has_passed() -> None:
    env = deferred_once(T0 + 600, delay=600)  # exactly delay-warning-after
    assert env.delay_warned is True
    assert env.notices == DELAYED


def test_a_delay_warning_is_added_to_the_notices_already_owed() -> None:
    a, b = Recipient("a@example.org"), Recipient("b@example.org")
    env = envelope(a, b)
    env.notices = FAILED
    settle(env, [a, b], {id(a): GONE, id(b): LATER}, attempt(T0 + 900, delay=600))
    assert env.notices == FAILED + DELAYED


@pytest.mark.parametrize(
    ("now", "delay", "sender", "warned"),
    [
        (T0 + 599, 600.0, "s@sender.test", False),  # not yet
        (T0 + 9000, None, "s@sender.test", False),  # no delay warnings configured
        (T0 + 900, 600.0, "", False),  # a bounce is never bounced, nor warned about
        (T0 + 900, 600.0, "s@sender.test", True),  # one warning per message
    ],
)
def test_no_delay_warning(now: float, delay: float | None, sender: str, warned: bool) -> None:
    env = deferred_once(now, delay=delay, sender=sender, warned=warned)
    assert env.notices == ""
    assert env.delay_warned is warned


def test_no_delay_warning_for_a_recipient_that_did_not_ask() -> None:
    rcpt = Recipient("a@example.org", notify=Notify.FAILURE)
    env = envelope(rcpt)
    settle(env, [rcpt], {id(rcpt): LATER}, attempt(T0 + 900, delay=600))
    assert (env.delay_warned, env.notices) == (False, "")


def test_one_delay_warning_for_several_deferred_recipients() -> None:
    a, b = Recipient("a@example.org"), Recipient("b@example.org")
    env = envelope(a, b)
    settle(env, [a, b], {id(a): LATER, id(b): LATER}, attempt(T0 + 900, delay=600))
    assert env.notices == DELAYED


def test_a_delivery_or_bounce_owes_no_delay_warning() -> None:
    a, b = Recipient("a@example.org"), Recipient("b@example.org")
    env = envelope(a, b)
    settle(env, [a, b], {id(a): OK, id(b): GONE}, attempt(T0 + 900, delay=600))
    assert (env.delay_warned, env.notices) == (False, "")
