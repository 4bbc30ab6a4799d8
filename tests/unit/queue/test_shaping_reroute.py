"""Mail waiting for a source IP that gets disabled moves to the pool's other members.

A ``disable-source-ip`` pattern (or another cluster node) takes one virtual MTA of a
pool out of use for one destination; the mail already waiting in that (destination,
virtual MTA) queue is routed again, so it goes out through the other members at once
instead of waiting for the source to come back. Uses the harness of
test_scheduler_transitions (a scripted transport, no sockets).
"""

from __future__ import annotations

from outrider.events.types import QueueEvent
from outrider.message.envelope import Envelope, Recipient
from outrider.queue.control_state import ControlState
from outrider.smtp.replies import Reply
from tests.unit.queue.test_scheduler_transitions import BODY, T0, Harness, idle, make

__all__ = ["make"]  # the fixture, shared with test_scheduler_transitions

DEFERRED = Reply(421, "4.7.0", "[TSS04] Messages from this source temporarily deferred")

POOL = """
[virtual-mta.a]
smtp-source-host = "127.0.0.10 a.outrider.test"
[virtual-mta.b]
smtp-source-host = "127.0.0.11 b.outrider.test"
[virtual-mta-pool.pool]
virtual-mtas = ["a", "b"]
[domain."p.test"]
smtp-pattern-list = "yahoo"
reenable-source-ip-after = "10m"
max-smtp-out = 1
[smtp-pattern-list.yahoo]
rules = [{ reply = "TSS04", action = "disable-source-ip" }]
"""


def submit(h: Harness, rcpt: str, vmta: str) -> Envelope:
    """Like Harness.submit, with the virtual MTA (or pool) the intake chose."""
    env = Envelope(f"Q{len(h.spool.bodies):04d}", "s@x.test", [Recipient(rcpt)], h.clock.now)
    env.vmta = vmta
    h.spool.bodies[env.queue_id] = BODY
    h.spool.saved[env.queue_id] = Envelope(env.queue_id, env.sender, [], env.received_at)
    h.scheduler.submit(env, BODY)
    return env


def sent_through(h: Harness) -> dict[str, str]:
    """Recipient -> the virtual MTA of its last delivery attempt."""
    return {rcpt: s.vmta for s in h.transport.sent for rcpt in s.recipients}


def waiting(h: Harness, key: str, vmta: str) -> list[str]:
    queue = h.scheduler.router.queues[(key, vmta)]
    return [r.address for item in queue.ready for r in item.recipients]


async def test_mail_waiting_behind_a_disabled_source_goes_out_through_the_other_member(
    make,
) -> None:
    h: Harness = await make(tables=POOL)
    for n in range(4):  # round robin: 0 and 2 through a, 1 and 3 through b
        submit(h, f"u{n}@p.test", "pool")
    assert waiting(h, "p.test", "a") == ["u0@p.test", "u2@p.test"]
    h.transport.replies["u0@p.test"] = DEFERRED  # a's first attempt is refused by pattern
    await idle()
    [event] = [e for e in h.of(QueueEvent) if e.action == "source-ip-disabled"]  # type: ignore[attr-defined]
    assert (event.queue, event.vmta, event.host) == ("p.test/a", "a", "mx.fake")  # type: ignore[attr-defined]
    assert sent_through(h) == {
        "u0@p.test": "a",  # the attempt that was refused
        "u1@p.test": "b",
        "u2@p.test": "b",  # was waiting for a: moved to b without waiting 10 minutes
        "u3@p.test": "b",
    }
    assert waiting(h, "p.test", "a") == []


async def test_a_source_disabled_by_another_node_moves_only_its_own_waiting_mail(make) -> None:
    h: Harness = await make(tables=POOL + '[domain."q.test"]\nmax-smtp-out = 1\n')
    for rcpt in ("u0@p.test", "u1@p.test", "u2@p.test", "v0@q.test", "v1@q.test"):
        submit(h, rcpt, "pool")
    assert waiting(h, "p.test", "a") == ["u0@p.test", "u2@p.test"]
    assert waiting(h, "q.test", "b") == ["v0@q.test"]  # q.test's turn of the round robin
    h.scheduler.shaper.apply_disabled("p.test", "a", T0 + 600)
    # p.test/a is emptied into p.test/b; q.test through a, and p.test/b, keep theirs.
    assert waiting(h, "p.test", "a") == []
    assert waiting(h, "p.test", "b") == ["u1@p.test", "u0@p.test", "u2@p.test"]
    assert waiting(h, "q.test", "a") == ["v1@q.test"]
    assert h.scheduler.ctx.control.disabled == {"p.test": {"a": T0 + 600}}
    assert ControlState.load(h.scheduler.config.server.state_dir).disabled == {
        "p.test": {"a": T0 + 600}
    }
    await idle()
    assert sent_through(h) == {
        "u0@p.test": "b",
        "u1@p.test": "b",
        "u2@p.test": "b",
        "v0@q.test": "b",
        "v1@q.test": "a",
    }
    assert h.of(QueueEvent) == []  # the node that matched the pattern published it
    await h.advance(600.01)
    [enabled] = h.of(QueueEvent)
    assert (enabled.at, enabled.queue, enabled.action) == (  # type: ignore[attr-defined]
        T0 + 600.01,
        "p.test/a",
        "source-ip-enabled",
    )


async def test_a_source_with_no_other_member_defers_its_waiting_mail(make) -> None:
    h: Harness = await make(tables=POOL)
    submit(h, "u0@p.test", "a")
    submit(h, "u1@p.test", "a")
    h.scheduler.shaper.apply_disabled("p.test", "a", T0 + 600)
    await idle()
    assert h.transport.sent == []  # nothing goes out through a disabled source
    assert h.scheduler.messages  # both wait for a retry, neither bounced


async def test_a_cluster_disablement_already_over_or_already_known_changes_nothing(make) -> None:
    h: Harness = await make(tables=POOL)
    submit(h, "u0@p.test", "pool")
    shaper = h.scheduler.shaper
    shaper.apply_disabled("p.test", "a", T0)  # over the moment it arrives
    assert waiting(h, "p.test", "a") == ["u0@p.test"]
    assert h.scheduler.ctx.control.disabled == {}
    dest = h.scheduler.router.destination("p.test")
    dest.disabled.disable("a", T0, until=T0 + 900, rule="TSS04", reply="421")
    shaper.apply_disabled("p.test", "a", T0 + 600)  # disabled here already, for longer
    assert waiting(h, "p.test", "a") == ["u0@p.test"]
    assert h.scheduler.ctx.control.disabled == {}
    assert dest.disabled.disabled(T0) == {"a": T0 + 900}


async def test_a_cluster_disablement_is_kept_until_its_time_then_lifted(make) -> None:
    h: Harness = await make(tables=POOL)
    h.scheduler.shaper.apply_disabled("p.test", "b", T0 + 60)
    dest = h.scheduler.router.destination("p.test")
    assert dest.disabled.disabled(T0) == {"b": T0 + 60}
    await h.advance(60)  # a little slack after its time, so it has surely run out
    assert dest.disabled.disabled(T0) == {"b": T0 + 60}
    assert h.of(QueueEvent) == []
    await h.advance(0.01)
    assert dest.disabled.disabled(h.clock.now) == {}
    assert h.scheduler.ctx.control.disabled == {"p.test": {}}
    assert [(e.at, e.queue, e.vmta) for e in h.of(QueueEvent)] == [  # type: ignore[attr-defined]
        (T0 + 60.01, "p.test/b", "b")
    ]


async def test_a_cluster_disablement_moves_the_queue_of_that_destination_and_source_only(
    make,
) -> None:
    h: Harness = await make(tables=POOL + '[domain."q.test"]\nmax-smtp-out = 1\n')
    for rcpt in ("u0@p.test", "u1@p.test", "v0@q.test", "v1@q.test"):
        submit(h, rcpt, "pool")
    assert waiting(h, "p.test", "b") == ["u1@p.test"]
    assert waiting(h, "q.test", "a") == ["v0@q.test"]
    h.scheduler.shaper.apply_disabled("q.test", "a", T0 + 600)
    assert waiting(h, "q.test", "a") == []
    assert waiting(h, "q.test", "b") == ["v1@q.test", "v0@q.test"]
    assert waiting(h, "p.test", "a") == ["u0@p.test"]  # same source, other destination
    assert waiting(h, "p.test", "b") == ["u1@p.test"]
