"""Messages waiting for their retry time are held packed, and unpacked when they act.

On the fake-clock scheduler harness: a deferred message is packed, comes due, is
unpacked and delivered; one something else still holds parts of stays as it is; the
console reads packed messages without unpacking them and acts on the ones it matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from outrider.message.envelope import Envelope, RcptStatus, Recipient
from outrider.message.packed import pack, unpack
from outrider.queue.finisher import RETRY_AFTER_ERROR
from tests.unit.queue import test_scheduler_transitions as transitions
from tests.unit.queue.test_console import ask
from tests.unit.queue.test_scheduler_transitions import LATER, Harness, idle

make = transitions.make  # the fake-clock harness fixture


async def deferred(make: Any, *rcpts: str, **kwargs: Any) -> Harness:
    h: Harness = await make(**kwargs)
    for rcpt in rcpts:
        h.transport.replies[rcpt] = LATER
    return h


async def test_a_deferred_message_waits_packed_and_is_delivered_when_due(make: Any) -> None:
    h = await deferred(make, "a@a.test")
    env = h.submit("a@a.test")
    await idle()
    msg = h.scheduler.messages[env.queue_id]
    assert msg.packed and msg.due > 0
    assert msg.view() == h.spool.saved[env.queue_id]  # the state made durable, all of it
    h.transport.replies.clear()
    await h.advance(60)
    assert len(h.transport.sent) == 2
    assert h.spool.removed == [env.queue_id]


async def test_a_message_deferred_again_is_packed_again(make: Any) -> None:
    h = await deferred(make, "a@a.test")
    env = h.submit("a@a.test")
    await idle()
    await h.advance(60)
    msg = h.scheduler.messages[env.queue_id]
    assert len(h.transport.sent) == 2 and msg.packed
    assert msg.view().recipients[0].attempts == 2


async def test_a_message_with_a_recipient_in_a_connections_hands_is_not_packed(make: Any) -> None:
    h = await deferred(make, "b@b.test")
    env = h.submit("a@a.test", "b@b.test")
    msg = h.scheduler.messages[env.queue_id]
    msg.inflight += 1  # as if a third item were still out
    await idle()
    assert not msg.packed  # b.test waits for its retry, but the message is still busy
    assert msg.envelope.recipients[1].status is RcptStatus.PENDING


async def test_a_message_owing_a_notice_is_not_packed(make: Any) -> None:
    h = await deferred(make, "a@a.test", delay="30s", notifier=False)
    env = h.submit("a@a.test")
    await idle()
    assert h.scheduler.messages[env.queue_id].packed
    await h.advance(60)  # the second deferral decides the delay warning
    msg = h.scheduler.messages[env.queue_id]
    assert msg.envelope.notices == "D" and msg.due > 0
    assert not msg.packed


async def test_console_look_ups_leave_packed_messages_packed(make: Any) -> None:
    h = await deferred(make, "a@a.test", "b@b.test")
    one, two = h.submit("a@a.test", job="spring"), h.submit("b@b.test")
    await idle()
    messages = [h.scheduler.messages[e.queue_id] for e in (one, two)]
    assert all(m.packed for m in messages)
    listed = (await ask(h, cmd="list"))["recipients"]
    assert sorted(r["rcpt"] for r in listed) == ["a@a.test", "b@b.test"]
    assert {r["state"] for r in listed} == {"deferred"}
    assert (await ask(h, cmd="message", id=one.queue_id))["message"]["sender"] == "s@x.test"
    assert [q["recipients"] for q in (await ask(h, cmd="queues"))["queues"]] == [1, 1]
    assert (await ask(h, cmd="jobs"))["jobs"][0]["job"] == "spring"
    assert all(m.packed for m in messages)


async def test_a_console_action_unpacks_only_the_messages_it_matches(make: Any) -> None:
    h = await deferred(make, "a@a.test", "b@b.test")
    one, two = h.submit("a@a.test"), h.submit("b@b.test")
    await idle()
    h.transport.replies.clear()
    assert (await ask(h, cmd="retry", id=one.queue_id))["retried"] == 1
    await idle()
    assert [s.queue_id for s in h.transport.sent][-1] == one.queue_id
    assert one.queue_id not in h.scheduler.messages  # delivered at once
    assert h.scheduler.messages[two.queue_id].packed


async def test_pausing_a_job_finds_its_packed_mail_without_unpacking_it(make: Any) -> None:
    h = await deferred(make, "a@a.test")
    env = h.submit("a@a.test", job="spring")
    await idle()
    assert await ask(h, cmd="pause-job", job="spring") == {"ok": True}
    assert "note" in await ask(h, cmd="pause-job", job="autumn")  # none of it queued
    assert h.scheduler.messages[env.queue_id].packed


async def test_deleting_a_packed_messages_recipient_bounces_it(make: Any) -> None:
    h = await deferred(make, "a@a.test", "b@a.test", notifier=False)
    env = h.submit("a@a.test", "b@a.test")
    await idle()
    assert h.scheduler.messages[env.queue_id].packed
    reply = await ask(h, cmd="delete", rcpt="a@a.test")
    assert (reply["deleted"], reply["busy"]) == (1, 0)
    await idle()
    saved = h.spool.saved[env.queue_id].recipients
    assert [r.status for r in saved] == [RcptStatus.BOUNCED, RcptStatus.PENDING]
    msg = h.scheduler.messages[env.queue_id]
    assert msg.envelope.recipients[1].next_attempt > h.clock.now


async def test_a_state_record_retried_after_an_error_uses_the_messages_own_recipients(
    make: Any,
) -> None:
    """The retry finds its recipients by position: the message may have been packed and
    unpacked meanwhile, and a stale Recipient object would not be in its envelope."""
    h = await deferred(make, "a@a.test", "b@a.test")
    h.spool.fail_record = 1
    env = h.submit("a@a.test", "b@a.test")
    await idle()
    msg = h.scheduler.messages[env.queue_id]
    msg._env = unpack(pack(msg.envelope))  # new objects, as after a pack and unpack
    seen: list[bool] = []
    record = h.spool.record

    async def checked(envelope: Envelope, recipients: Sequence[Recipient]) -> None:
        seen.append(all(any(r is o for o in envelope.recipients) for r in recipients))
        await record(envelope, recipients)

    h.spool.record = checked  # type: ignore[method-assign]
    await h.advance(RETRY_AFTER_ERROR)
    assert seen == [True]
    assert [r.attempts for r in h.spool.saved[env.queue_id].recipients] == [1, 1]


async def test_queued_bytes_follow_messages_in_and_out_without_unpacking(make: Any) -> None:
    h = await deferred(make, "b@b.test")
    sizes = {"a@a.test": 1_000, "b@b.test": 20_000}
    envs = []
    for rcpt, size in sizes.items():
        env = Envelope(f"S{size}", "s@x.test", [Recipient(rcpt)], h.clock.now, size=size)
        h.spool.bodies[env.queue_id] = b"Subject: x\r\n\r\nx\r\n"
        h.spool.saved[env.queue_id] = Envelope(env.queue_id, "s@x.test", [], env.received_at)
        h.scheduler.submit(env, None)
        envs.append(env)
    assert h.scheduler.queued_bytes == 21_000
    await idle()  # a.test delivered and removed, b.test deferred and packed
    assert h.spool.removed == ["S1000"]
    assert h.scheduler.queued_bytes == 20_000
    assert h.scheduler.messages["S20000"].packed
    restored = Envelope(
        "R1",
        "s@x.test",
        [Recipient("c@c.test", next_attempt=h.clock.now + 60)],
        h.clock.now,
        size=300,
    )
    h.scheduler.restore(restored)
    assert h.scheduler.queued_bytes == 20_300
    assert h.scheduler.messages["R1"].packed  # waiting for its retry: packed at once
