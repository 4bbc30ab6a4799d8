from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from outrider.policy.backoff import (
    BackoffState,
    DisabledSources,
    Mode,
    effective_limits,
)
from outrider.policy.rate import Rate, RateLike


def test_enter_returns_a_transition() -> None:
    s = BackoffState()
    assert s.mode is Mode.NORMAL
    t = s.enter(10.0, rule=r"rate limited", reply="421 4.7.28 rate limited")
    assert t is not None
    assert (t.from_mode, t.to_mode, t.reason, t.at) == (Mode.NORMAL, Mode.BACKOFF, "pattern", 10.0)
    assert t.rule == "rate limited"
    assert t.reply == "421 4.7.28 rate limited"
    assert s.in_backoff
    assert s.since == 10.0


def test_repeat_match_refreshes_the_timer() -> None:
    s = BackoffState()
    s.enter(0.0, rule=None, reply=None)
    assert s.enter(50.0, rule=None, reply=None) is None
    assert s.since == 50.0
    assert s.next_deadline(100.0) == 150.0
    assert s.tick(120.0, to_normal_after=100.0) is None
    t = s.tick(150.0, to_normal_after=100.0)
    assert t is not None
    assert (t.to_mode, t.reason) == (Mode.NORMAL, "timer")
    assert s.mode is Mode.NORMAL
    assert s.next_deadline(100.0) is None


def test_refresh_never_moves_the_timer_back() -> None:
    s = BackoffState()
    s.enter(100.0, rule=None, reply=None)
    s.enter(90.0, rule=None, reply=None)
    assert s.since == 100.0


def test_no_timer_means_stay_in_backoff() -> None:
    s = BackoffState()
    s.enter(0.0, rule=None, reply=None)
    assert s.tick(1e9, to_normal_after=None) is None
    assert s.next_deadline(None) is None
    assert s.mode is Mode.BACKOFF


def test_delivery_returns_to_normal_only_when_configured() -> None:
    s = BackoffState()
    s.enter(0.0, rule=None, reply=None)
    assert s.on_delivery(5.0, to_normal_after_delivery=False) is None
    assert s.mode is Mode.BACKOFF
    t = s.on_delivery(6.0, to_normal_after_delivery=True)
    assert t is not None
    assert t.reason == "delivery"
    assert s.on_delivery(7.0, to_normal_after_delivery=True) is None


def test_manual_and_pattern_leave() -> None:
    s = BackoffState()
    assert s.leave(0.0) is None
    s.enter(1.0, rule=None, reply=None, reason="manual")
    t = s.leave(2.0, reason="pattern", rule="ok now", reply="250 ok now")
    assert t is not None
    assert (t.from_mode, t.reason, t.rule) == (Mode.BACKOFF, "pattern", "ok now")
    assert t.reply == "250 ok now"  # the accounting record says which reply ended backoff
    assert s.since == 2.0


def test_a_fresh_queue_is_normal_since_zero() -> None:
    s = BackoffState()
    assert (s.mode, s.since) == (Mode.NORMAL, 0.0)


def test_tick_in_normal_is_a_no_op() -> None:
    assert BackoffState().tick(1e9, to_normal_after=1.0) is None


@settings(max_examples=100, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["enter", "tick", "deliver", "leave"]), st.floats(0, 100)),
        max_size=50,
    )
)
def test_transitions_alternate(events: list[tuple[str, float]]) -> None:
    s = BackoffState()
    now = 0.0
    mode = Mode.NORMAL
    for kind, dt in events:
        now += dt
        if kind == "enter":
            t = s.enter(now, rule=None, reply=None)
        elif kind == "tick":
            t = s.tick(now, to_normal_after=30.0)
        elif kind == "deliver":
            t = s.on_delivery(now, to_normal_after_delivery=True)
        else:
            t = s.leave(now)
        if t is not None:
            assert t.from_mode is mode
            assert t.to_mode is not mode
            mode = t.to_mode
        assert s.mode is mode


# --- effective limits ---


NORMAL_RATE = Rate(100, 60)
BACKOFF_RATE = Rate(10, 60)


@dataclass(frozen=True)
class Policy:
    max_msg_rate: RateLike | None = NORMAL_RATE
    max_smtp_out: int = 20
    retry_after: tuple[float, ...] = (300.0, 600.0)
    backoff_max_msg_rate: RateLike | None = BACKOFF_RATE
    backoff_max_smtp_out: int = 2
    backoff_retry_after: float | tuple[float, ...] = 1800.0


def test_normal_limits() -> None:
    lim = effective_limits(Policy(), Mode.NORMAL)
    assert (lim.max_msg_rate, lim.max_smtp_out, lim.retry_after) == (
        Rate(100, 60),
        20,
        (300.0, 600.0),
    )


def test_backoff_limits_replace_normal() -> None:
    lim = effective_limits(Policy(), Mode.BACKOFF)
    assert (lim.max_msg_rate, lim.max_smtp_out, lim.retry_after) == (Rate(10, 60), 2, (1800.0,))


def test_backoff_schedule_may_be_a_sequence() -> None:
    lim = effective_limits(Policy(backoff_retry_after=(60.0, 120.0)), Mode.BACKOFF)
    assert lim.retry_after == (60.0, 120.0)


def test_backoff_is_never_looser_than_normal() -> None:
    p = Policy(backoff_max_msg_rate=None, backoff_max_smtp_out=50)
    lim = effective_limits(p, Mode.BACKOFF)
    assert lim.max_msg_rate == Rate(100, 60)
    assert lim.max_smtp_out == 20
    unlimited = Policy(max_msg_rate=None, backoff_max_msg_rate=None)
    assert effective_limits(unlimited, Mode.BACKOFF).max_msg_rate is None


# --- disabled source IPs ---


def test_disable_and_expire() -> None:
    d = DisabledSources()
    rec = d.disable("vmta-a", 10.0, until=70.0, rule="blocked", reply="550 5.7.1 blocked")
    assert rec is not None
    assert (rec.vmta, rec.at, rec.until, rec.rule) == ("vmta-a", 10.0, 70.0, "blocked")
    assert rec.reply == "550 5.7.1 blocked"
    assert d.is_disabled("vmta-a", 69.9)
    assert not d.is_disabled("vmta-a", 70.0)
    assert not d.is_disabled("vmta-b", 20.0)
    assert d.enabled(["vmta-a", "vmta-b", "vmta-c"], 20.0) == ["vmta-b", "vmta-c"]
    assert d.enabled(["vmta-a", "vmta-b"], 80.0) == ["vmta-a", "vmta-b"]
    assert d.next_deadline() == 70.0
    assert d.expire(69.0) == []
    assert d.expire(70.0) == ["vmta-a"]
    assert d.next_deadline() is None


def test_repeat_disable_extends_and_returns_none() -> None:
    d = DisabledSources()
    d.disable("a", 0.0, until=60.0, rule=None, reply=None)
    assert d.disable("a", 30.0, until=90.0, rule=None, reply=None) is None
    assert d.is_disabled("a", 80.0)
    assert d.disable("a", 40.0, until=50.0, rule=None, reply=None) is None
    assert d.is_disabled("a", 80.0)  # never shortened
    assert d.disable("a", 100.0, until=160.0, rule=None, reply=None) is not None


def test_next_deadline_is_the_earliest() -> None:
    d = DisabledSources()
    d.disable("a", 0.0, until=60.0, rule=None, reply=None)
    d.disable("b", 0.0, until=30.0, rule=None, reply=None)
    assert d.next_deadline() == 30.0
    assert d.disabled(40.0) == {"a": 60.0}
    assert d.disabled(60.0) == {}  # back in use at its until time, as is_disabled says


def test_a_match_at_the_until_time_disables_afresh() -> None:
    """At ``until`` the source is back in use, so a new match is a new disablement."""
    d = DisabledSources()
    d.disable("a", 0.0, until=60.0, rule=None, reply=None)
    rec = d.disable("a", 60.0, until=120.0, rule="again", reply="421 again")
    assert rec is not None
    assert (rec.at, rec.until) == (60.0, 120.0)


def test_manual_enable() -> None:
    d = DisabledSources()
    d.disable("a", 0.0, until=60.0, rule=None, reply=None)
    assert d.enable("a")
    assert not d.enable("a")
    assert not d.is_disabled("a", 1.0)


def test_a_slower_backoff_rate_over_a_longer_period_is_kept() -> None:
    """Compared as messages per second, not by count: 10/1h is slower than 100/1m."""
    p = Policy(max_msg_rate=Rate(100, 60), backoff_max_msg_rate=Rate(10, 3600))
    assert effective_limits(p, Mode.BACKOFF).max_msg_rate == Rate(10, 3600)
    faster = Policy(max_msg_rate=Rate(10, 3600), backoff_max_msg_rate=Rate(100, 60))
    assert effective_limits(faster, Mode.BACKOFF).max_msg_rate == Rate(10, 3600)


def test_backoff_keeps_one_connection_at_least_and_no_more_than_asked() -> None:
    assert effective_limits(Policy(backoff_max_smtp_out=1), Mode.BACKOFF).max_smtp_out == 1
    assert effective_limits(Policy(backoff_max_smtp_out=0), Mode.BACKOFF).max_smtp_out == 1
    one = Policy(max_smtp_out=1, backoff_max_smtp_out=5)
    assert effective_limits(one, Mode.BACKOFF).max_smtp_out == 1


def test_enabled_with_nothing_disabled_is_every_source_in_order() -> None:
    d = DisabledSources()
    assert d.enabled(["b", "a", "c"], 0.0) == ["b", "a", "c"]
    assert d.enabled(iter(["x"]), 0.0) == ["x"]  # any iterable, returned as a list


def test_every_exit_says_when_why_and_carries_no_stale_reply() -> None:
    s = BackoffState()
    s.enter(10.0, rule="421", reply="421 4.7.0 slow down")
    by_timer = s.tick(70.0, to_normal_after=60.0)
    assert by_timer is not None
    assert (by_timer.reason, by_timer.at, by_timer.rule, by_timer.reply) == (
        "timer",
        70.0,
        None,
        None,
    )
    assert (by_timer.from_mode, by_timer.to_mode) == (Mode.BACKOFF, Mode.NORMAL)
    assert s.since == 70.0
    s.enter(80.0, rule="421", reply="421 again")
    by_delivery = s.on_delivery(85.0, to_normal_after_delivery=True)
    assert by_delivery is not None
    assert (by_delivery.reason, by_delivery.at, by_delivery.reply) == ("delivery", 85.0, None)
    s.enter(90.0, rule=None, reply=None, reason="manual")
    by_hand = s.leave(95.0)
    assert by_hand is not None
    assert (by_hand.reason, by_hand.at, by_hand.rule, by_hand.reply) == ("manual", 95.0, None, None)
    assert s.leave(96.0) is None  # already normal
