"""The shaper through the scheduler on a fake clock: backoff restored after a restart,
source IPs disabled by a pattern and enabled again, ``mode=normal`` patterns.

Uses the harness of test_scheduler_transitions (a scripted transport, no sockets).
"""

from __future__ import annotations

from outrider.events.types import QueueEvent
from outrider.queue.control_state import ControlState
from outrider.smtp.replies import Reply
from tests.unit.queue.test_scheduler_transitions import T0, THROTTLED, Harness, idle, make

__all__ = ["make"]  # the fixture, shared with test_scheduler_transitions

BLOCKED = Reply(550, "5.7.1", "blocked by policy")
RECOVERED = Reply(452, "4.2.2", "all clear now")

SHAPING = """
[domain."b.test"]
smtp-pattern-list = "block"
reenable-source-ip-after = "10m"
[domain."c.test"]
smtp-pattern-list = "mixed"
backoff-to-normal-after = "1d"
backoff-retry-after = "2m"
[smtp-pattern-list.block]
rules = [{ reply = "blocked", action = "disable-source-ip" }]
[smtp-pattern-list.mixed]
rules = [
  { reply = "4\\\\.7\\\\.28", action = "mode=backoff" },
  { reply = "all clear", action = "mode=normal" },
]
"""


def queue_events(h: Harness) -> list[tuple[float, str, str, str, str, str]]:
    return [
        (e.at, e.queue, e.vmta, e.action, e.reply, e.rule)  # type: ignore[attr-defined]
        for e in h.of(QueueEvent)
    ]


async def test_backoff_is_restored_after_a_restart_until_its_timer_runs_out(make) -> None:
    h: Harness = await make()
    h.scheduler.ctx.control.backoff["a.test/default"] = T0 - 10
    h.submit("a@a.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    assert queue.name == "a.test/default"
    assert queue.mode.value == "backoff"
    assert queue.backoff.since == T0 - 10
    await h.advance(19)
    assert queue.mode.value == "backoff"
    await h.advance(1)  # 30 s after it was entered
    assert queue.mode.value == "normal"
    assert [e[3] for e in queue_events(h)] == ["normal"]
    assert h.scheduler.ctx.control.backoff == {}


async def test_a_backoff_that_ran_out_while_stopped_is_forgotten(make) -> None:
    h: Harness = await make()
    h.scheduler.ctx.control.backoff["a.test/default"] = T0 - 30
    h.submit("a@a.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    assert queue.mode.value == "normal"
    assert h.scheduler.ctx.control.backoff == {}
    assert queue_events(h) == []


async def test_a_pattern_disables_the_source_ip_and_the_timer_enables_it(make) -> None:
    h: Harness = await make(tables=SHAPING)
    h.transport.replies["x@b.test"] = BLOCKED
    h.submit("x@b.test")
    await idle()
    disabled = h.of(QueueEvent)
    assert [(e.at, e.queue, e.vmta, e.action) for e in disabled] == [  # type: ignore[attr-defined]
        (T0, "b.test/default", "default", "source-ip-disabled")
    ]
    assert disabled[0].reply == str(BLOCKED)  # type: ignore[attr-defined]
    assert disabled[0].rule  # type: ignore[attr-defined]
    assert h.scheduler.ctx.control.disabled == {"b.test": {"default": T0 + 600}}
    dest = h.scheduler.router.destination("b.test")
    assert dest.disabled.is_disabled("default", T0 + 599)
    await h.advance(599)
    assert len(h.of(QueueEvent)) == 1
    await h.advance(1.1)
    enabled = h.of(QueueEvent)[1]
    assert (enabled.queue, enabled.vmta, enabled.action) == (  # type: ignore[attr-defined]
        "b.test/default",
        "default",
        "source-ip-enabled",
    )
    assert h.scheduler.ctx.control.disabled == {"b.test": {}}
    assert not dest.disabled.is_disabled("default", h.clock.now)


async def test_mode_normal_pattern_ends_backoff_and_carries_its_reply(make) -> None:
    h: Harness = await make(tables=SHAPING)
    h.transport.replies["slow@c.test"] = THROTTLED
    h.submit("slow@c.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    assert queue.mode.value == "backoff"
    assert h.scheduler.ctx.control.backoff == {queue.name: T0}
    h.transport.replies["slow@c.test"] = RECOVERED
    await h.advance(120)
    assert queue.mode.value == "normal"
    events = queue_events(h)
    assert [e[3] for e in events] == ["backoff", "normal"]
    assert events[1][:4] == (T0 + 120, "c.test/default", "default", "normal")
    assert events[1][4] == str(RECOVERED)
    assert events[1][5]
    assert h.scheduler.ctx.control.backoff == {}


async def test_a_source_disabled_before_a_restart_stays_disabled_until_its_time(make) -> None:
    h: Harness = await make(tables=SHAPING)
    h.scheduler.ctx.control.disabled["b.test"] = {"default": T0 + 100, "gone": T0 - 1}
    h.submit("x@b.test")
    await idle()
    dest = h.scheduler.router.destination("b.test")
    assert dest.disabled.disabled(T0) == {"default": T0 + 100}  # the past one is not restored
    await h.advance(99)
    assert queue_events(h) == []
    await h.advance(1.1)
    assert [(e[1], e[3]) for e in queue_events(h)] == [("b.test/default", "source-ip-enabled")]
    assert h.scheduler.ctx.control.disabled["b.test"] == {"gone": T0 - 1}


async def test_a_pattern_backoff_event_names_the_host_and_the_rule(make) -> None:
    h: Harness = await make()
    h.transport.replies["slow@a.test"] = THROTTLED
    h.submit("slow@a.test")
    await idle()
    [event] = h.of(QueueEvent)
    assert event.host == "mx.fake"  # type: ignore[attr-defined]
    assert event.rule  # type: ignore[attr-defined]
    assert event.reply == str(THROTTLED)  # type: ignore[attr-defined]


async def test_a_delivery_ends_backoff_when_configured(make) -> None:
    h: Harness = await make(
        tables='[domain."d.test"]\nbackoff-to-normal-after-delivery = true\n'
        'backoff-retry-after = "1m"\nbackoff-to-normal-after = "never"\n'
    )
    h.transport.replies["x@d.test"] = THROTTLED
    h.submit("x@d.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    assert queue.mode.value == "backoff"
    h.transport.replies.clear()
    await h.advance(60)
    assert queue.mode.value == "normal"
    assert [(e[3], e[0]) for e in queue_events(h)] == [("backoff", T0), ("normal", T0 + 60)]
    assert h.scheduler.ctx.control.backoff == {}


async def test_a_repeat_match_extends_the_disablement_and_the_timer_follows(make) -> None:
    h: Harness = await make(tables=SHAPING)
    h.transport.replies["x@b.test"] = BLOCKED
    h.submit("x@b.test")
    await idle()
    dest = h.scheduler.router.destination("b.test")
    await h.advance(300)
    dest.disabled.disable("default", h.clock.now, until=T0 + 900, rule=None, reply=None)
    await h.advance(300.1)  # the first timer fires, finds it extended and waits again
    assert [e[3] for e in queue_events(h)] == ["source-ip-disabled"]
    assert dest.disabled.is_disabled("default", h.clock.now)
    await h.advance(300)
    assert [e[3] for e in queue_events(h)] == ["source-ip-disabled", "source-ip-enabled"]


Shared = tuple[str, str, bool, float]


def share_recorder(h: Harness) -> list[Shared]:
    """What the shaper tells the cluster (``Context.share``, set by a cluster node)."""
    told: list[Shared] = []
    h.scheduler.ctx.share = lambda kind, name, on, value: told.append((kind, name, on, value))
    return told


async def test_backoff_transitions_are_told_to_the_cluster_with_their_times(make) -> None:
    h: Harness = await make(tables=SHAPING)
    told = share_recorder(h)
    h.transport.replies["slow@c.test"] = THROTTLED
    h.submit("slow@c.test")
    await idle()
    h.transport.replies["slow@c.test"] = RECOVERED
    await h.advance(120)
    assert told == [
        ("backoff", "c.test/default", True, T0),
        ("backoff", "c.test/default", False, T0 + 120),
    ]


async def test_a_repeat_match_in_backoff_is_told_to_the_cluster_at_most_once_a_second(
    make,
) -> None:
    h: Harness = await make()
    h.transport.replies["slow@a.test"] = THROTTLED
    h.submit("slow@a.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    told = share_recorder(h)
    shaper = h.scheduler.shaper
    shaper.react(queue, THROTTLED, "rcpt", "mx.fake")  # the first refresh is told at once
    h.clock.now = T0 + 0.5
    shaper.react(queue, THROTTLED, "rcpt", "mx.fake")  # too soon after it
    h.clock.now = T0 + 1
    shaper.react(queue, THROTTLED, "rcpt", "mx.fake")  # a second later: told again
    assert told == [
        ("backoff", "a.test/default", True, T0),
        ("backoff", "a.test/default", True, T0 + 1),
    ]
    assert queue.backoff.since == T0 + 1  # each match restarted the timer
    assert [e[3] for e in queue_events(h)] == ["backoff"]  # no new transition


async def test_a_backoff_match_on_a_queue_not_in_backoff_is_a_transition_not_a_refresh(
    make,
) -> None:
    h: Harness = await make()
    h.submit("x@a.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    told = share_recorder(h)
    queue.backoff.enter(T0, rule=None, reply=None)  # entered, but left again at once:
    queue.backoff.leave(T0)  # the queue is in normal mode
    h.scheduler.shaper._share_refresh(queue, T0)  # a refresh only concerns backoff
    assert told == []


async def test_the_cluster_is_told_of_a_disabled_source_and_until_when(make) -> None:
    h: Harness = await make(tables=SHAPING)
    told = share_recorder(h)
    h.transport.replies["x@b.test"] = BLOCKED
    h.submit("x@b.test")
    await idle()
    assert told == [("source", "b.test/default", True, T0 + 600)]
    [disabled] = h.of(QueueEvent)
    assert disabled.host == "mx.fake"  # type: ignore[attr-defined]
    record = h.scheduler.router.destination("b.test").disabled.disable(
        "default", T0, until=T0, rule=None, reply=None
    )
    assert record is None  # still disabled: a repeat only extends it


async def test_replies_from_400_up_are_matched_and_success_replies_never(make) -> None:
    h: Harness = await make()
    h.submit("x@a.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    shaper = h.scheduler.shaper
    ok_with_the_text = Reply(250, "2.0.0", "queued, 4.7.28 noted")
    assert shaper.react(queue, ok_with_the_text, "data", "mx.fake") == []
    assert queue.mode.value == "normal"
    [match] = shaper.react(queue, Reply(400, "4.7.28", "slow down"), "data", "mx.fake")
    assert match.reply == "400 4.7.28 slow down"
    assert queue.mode.value == "backoff"


PHASED = """
[domain."e.test"]
smtp-pattern-list = "phased"
[smtp-pattern-list.phased]
rules = [{ reply = "4\\\\.7\\\\.28", action = "mode=backoff", phase = "connect" }]
"""


async def test_a_pattern_for_one_phase_ignores_the_same_reply_in_another(make) -> None:
    h: Harness = await make(tables=PHASED)
    h.submit("x@e.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    shaper = h.scheduler.shaper
    assert shaper.react(queue, THROTTLED, "rcpt", "mx.fake") == []
    assert queue.mode.value == "normal"
    assert len(shaper.react(queue, THROTTLED, "connect", "mx.fake")) == 1
    assert queue.mode.value == "backoff"


async def test_mode_normal_pattern_is_logged_as_a_pattern_transition(make, caplog) -> None:
    h: Harness = await make(tables=SHAPING)
    h.transport.replies["slow@c.test"] = THROTTLED
    h.submit("slow@c.test")
    await idle()
    h.transport.replies["slow@c.test"] = RECOVERED
    await h.advance(120)
    assert f"c.test/default: normal mode (pattern: {RECOVERED})" in caplog.messages
    [normal] = [e for e in h.of(QueueEvent) if e.action == "normal"]  # type: ignore[attr-defined]
    assert normal.host == "mx.fake"  # type: ignore[attr-defined]


async def test_a_refreshed_backoff_ends_after_the_last_match_not_the_first(make) -> None:
    h: Harness = await make()
    h.transport.replies["slow@a.test"] = THROTTLED
    h.submit("slow@a.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    await h.advance(20)
    h.scheduler.shaper.react(queue, THROTTLED, "rcpt", "mx.fake")  # backoff-to-normal-after 30s
    await h.advance(10)  # the first timer finds the backoff refreshed and waits again
    assert queue.mode.value == "backoff"
    await h.advance(19)
    assert queue.mode.value == "backoff"
    await h.advance(1)
    assert queue.mode.value == "normal"
    assert [(e[3], e[0]) for e in queue_events(h)] == [("backoff", T0), ("normal", T0 + 50)]


async def test_a_delivery_that_ends_backoff_tells_the_cluster_when(make) -> None:
    h: Harness = await make(
        tables='[domain."d.test"]\nbackoff-to-normal-after-delivery = true\n'
        'backoff-retry-after = "1m"\nbackoff-to-normal-after = "never"\n'
    )
    h.transport.replies["x@d.test"] = THROTTLED
    h.submit("x@d.test")
    await idle()
    told = share_recorder(h)
    h.transport.replies.clear()
    await h.advance(60)
    assert told == [("backoff", "d.test/default", False, T0 + 60)]


async def test_a_source_whose_time_is_exactly_up_is_not_restored(make) -> None:
    h: Harness = await make(tables=SHAPING)
    h.scheduler.ctx.control.disabled["b.test"] = {"default": T0, "other": T0 + 5}
    h.submit("x@b.test")
    await idle()
    dest = h.scheduler.router.destination("b.test")
    assert dest.disabled.disabled(T0 - 1) == {"other": T0 + 5}


async def test_a_source_enabled_again_is_gone_from_the_saved_state(make) -> None:
    h: Harness = await make(tables=SHAPING)
    h.transport.replies["x@b.test"] = BLOCKED
    h.submit("x@b.test")
    await idle()
    state_dir = h.scheduler.config.server.state_dir
    assert ControlState.load(state_dir).disabled == {"b.test": {"default": T0 + 600}}
    await h.advance(600.01)
    assert ControlState.load(state_dir).disabled == {}
    [enabled] = [e for e in queue_events(h) if e[3] == "source-ip-enabled"]
    assert enabled[:3] == (T0 + 600.01, "b.test/default", "default")


async def test_a_source_disabled_again_right_after_its_time_is_enabled_once(make) -> None:
    h: Harness = await make(tables=SHAPING)
    h.transport.replies["x@b.test"] = BLOCKED
    h.submit("x@b.test")
    await idle()
    queue = h.scheduler.router.queues[("b.test", "default")]
    await h.advance(600.005)  # its time is up, the re-enable timer has not run yet
    h.scheduler.shaper.react(queue, BLOCKED, "rcpt", "mx.fake")  # disabled again
    await h.advance(600.01)  # both timers run now: one "enabled" between them
    actions = [(e[3], e[0]) for e in queue_events(h)]
    assert actions == [
        ("source-ip-disabled", T0),
        ("source-ip-disabled", T0 + 600.005),
        ("source-ip-enabled", T0 + 1200.015),
    ]
    assert h.scheduler.ctx.control.disabled == {"b.test": {}}


async def test_a_restored_backoff_with_half_a_second_left_ends_half_a_second_later(make) -> None:
    h: Harness = await make()
    h.scheduler.ctx.control.backoff["a.test/default"] = T0 - 29.5  # backoff-to-normal-after 30s
    h.submit("a@a.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    assert queue.mode.value == "backoff"
    await h.advance(0.5)
    assert queue.mode.value == "normal"
