"""The scheduler's promises that span a virtual MTA's policy, the operator's commands
and the spool: a virtual MTA's own bounce-after and delay-warning-after apply to its
mail; a removal is recorded against the pool member the mail waited for; a message rate
slower than the idle timeout keeps mail waiting (never deferred), also across an
operator retry; a deletion never routes the message's other recipients again; a failed
removal is retried. Uses the harness of test_scheduler_transitions (fake clock, scripted
transport).
"""

from __future__ import annotations

from typing import Any

from outrider.events.types import Bounced, Deferred, Delivered
from outrider.message.envelope import Envelope, RcptStatus, Recipient
from outrider.queue.control import handle_request
from outrider.queue.finisher import RETRY_AFTER_ERROR
from outrider.queue.operator import Operator
from outrider.spool.base import SpoolError
from tests.support.memory_spool import MemorySpool
from tests.unit.queue.test_scheduler_transitions import BODY, LATER, T0, Harness, idle, make

__all__ = ["make"]  # the fixture, shared with test_scheduler_transitions

POOL = """
[virtual-mta.a]
smtp-source-host = "127.0.0.10"
[virtual-mta.b]
smtp-source-host = "127.0.0.11"
[virtual-mta-pool.both]
virtual-mtas = ["a", "b"]
"""

SHORT_LIVED = """
[virtual-mta.brief]
smtp-source-host = "127.0.0.12"
[virtual-mta.brief.domain."*"]
bounce-after = "100s"
delay-warning-after = "30s"
"""

SLOW = '[domain."a.test"]\nmax-msg-rate = "1/10m"\n'


def _submit(h: Harness, *rcpts: str, vmta: str) -> Envelope:
    env = Envelope(f"Q{len(h.spool.bodies):04d}", "s@x.test", [Recipient(r) for r in rcpts], T0)
    env.vmta = vmta
    h.spool.bodies[env.queue_id] = BODY
    h.spool.saved[env.queue_id] = Envelope(env.queue_id, env.sender, [], T0)
    h.scheduler.submit(env, BODY)
    return env


async def ask(h: Harness, **request: Any) -> dict[str, Any]:
    return await handle_request(Operator(h.scheduler), request)


async def test_a_virtual_mtas_own_bounce_after_expires_its_mail(make) -> None:
    """bounce-after and delay-warning-after set for one virtual MTA apply to the mail it
    sends; the same domain through the default virtual MTA keeps the global day."""
    h: Harness = await make(tables=SHORT_LIVED, notifier=False)
    h.transport.replies["a@a.test"] = h.transport.replies["b@a.test"] = LATER
    brief = _submit(h, "a@a.test", vmta="brief")
    plain = _submit(h, "b@a.test", vmta="default")
    await idle()
    for _ in range(3):
        await h.advance(60)
    [bounced] = h.of(Bounced)
    assert (bounced.recipient, bounced.expired) == ("a@a.test", True)  # type: ignore[attr-defined]
    brief, plain = (h.scheduler.messages[e.queue_id].envelope for e in (brief, plain))
    assert brief.recipients[0].status is RcptStatus.BOUNCED
    assert brief.notices == "DF"  # owed: a delay warning at 60 s, then the failure
    assert plain.recipients[0].status is RcptStatus.PENDING
    assert plain.notices == ""


async def test_a_removal_is_recorded_against_the_pool_member_the_mail_waits_for(make) -> None:
    h: Harness = await make(tables=POOL, notifier=False)
    h.transport.replies["a@a.test"] = LATER
    env = _submit(h, "a@a.test", vmta="both")
    await idle()
    [deferred] = h.of(Deferred)
    member = deferred.vmta  # type: ignore[attr-defined]
    assert member in {"a", "b"}
    assert await ask(h, cmd="delete", id=env.queue_id) == {"ok": True, "deleted": 1, "busy": 0}
    await idle()
    [bounced] = h.of(Bounced)
    assert (bounced.queue, bounced.vmta, bounced.pool) == (deferred.queue, member, "both")  # type: ignore[attr-defined]


async def test_a_message_rate_keeps_mail_waiting_without_deferring_it(make) -> None:
    """The connection gives up when the next message is further off than its idle
    timeout; the message waits in its queue (no attempt, no deferral) and goes when the
    rate allows."""
    h: Harness = await make(notifier=False, tables=SLOW)
    h.submit("a@a.test")
    second = h.submit("b@a.test")
    await idle()
    assert [s.recipients for s in h.transport.sent] == [["a@a.test"]]
    await h.advance(599)
    assert len(h.transport.sent) == 1
    await h.advance(1)
    await h.advance(1)
    assert [s.recipients for s in h.transport.sent] == [["a@a.test"], ["b@a.test"]]
    assert h.of(Deferred) == []
    assert second.recipients[0].attempts == 1


async def test_a_retry_while_a_queue_waits_for_its_rate_leaves_that_mail_waiting(make) -> None:
    h: Harness = await make(notifier=False, tables=SLOW)
    h.transport.replies["c@c.test"] = LATER
    h.submit("a@a.test")
    h.submit("b@a.test")  # waits in a.test's queue for the message rate
    h.submit("c@c.test")
    await idle()
    h.transport.replies.clear()
    assert (await ask(h, cmd="retry", all=True))["retried"] == 1  # c@c.test's
    await idle()
    assert [s.recipients for s in h.transport.sent][-1] == ["c@c.test"]
    assert [r for s in h.transport.sent for r in s.recipients].count("b@a.test") == 0
    await h.advance(600)
    await h.advance(1)
    assert {e.recipient for e in h.of(Delivered)} == {"a@a.test", "b@a.test", "c@c.test"}  # type: ignore[attr-defined]
    assert [e.recipient for e in h.of(Deferred)] == ["c@c.test"]  # type: ignore[attr-defined]


async def test_deleting_one_domains_recipient_leaves_the_other_item_routed_once(make) -> None:
    """The message's other item still waits in its (paused) queue: the deletion must not
    schedule the message again, or that recipient would be routed, and sent, twice."""
    h: Harness = await make(notifier=False)
    operator = Operator(h.scheduler)
    operator.pause_queue("a.test")
    operator.pause_queue("b.test")
    env = h.submit("a@a.test", "b@b.test")
    await idle()
    reply = await ask(h, cmd="delete", rcpt="a@a.test")
    assert (reply["deleted"], reply["busy"]) == (1, 0)
    await idle()
    assert operator.status()["held"] == {"domain:b.test": 1}
    assert operator.resume_queue("b.test")
    await idle()
    assert [s.recipients for s in h.transport.sent] == [["b@b.test"]]
    assert [e.recipient for e in h.of(Bounced)] == ["a@a.test"]  # type: ignore[attr-defined]
    assert h.spool.removed == [env.queue_id]


class RemovalFailsOnce(MemorySpool):
    """The first remove() fails, like a disk gone read-only for a moment."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_removals: list[str] = []

    async def remove(self, queue_id: str) -> None:
        if not self.failed_removals:
            self.failed_removals.append(queue_id)
            raise SpoolError("spool remove failed: read-only file system")
        await super().remove(queue_id)


async def test_a_restored_finished_message_whose_removal_fails_is_removed_later(make) -> None:
    spool = RemovalFailsOnce()
    done = Envelope("DONE", "s@x.test", [Recipient("a@a.test")], T0)
    done.recipients[0].status = RcptStatus.DELIVERED
    spool.saved["DONE"] = done
    spool.bodies["DONE"] = BODY
    h: Harness = await make(spool=spool)
    h.scheduler.restore(next(spool.recover()))
    h.scheduler.recovery_done()
    await idle()
    assert (spool.failed_removals, spool.removed) == (["DONE"], [])
    assert h.scheduler.pending_messages == 1
    await h.advance(RETRY_AFTER_ERROR)
    assert spool.removed == ["DONE"]
    assert h.scheduler.pending_messages == 0
    assert h.transport.sent == []


async def test_a_later_recipient_falling_due_leaves_an_item_waiting_in_its_queue_alone(
    make,
) -> None:
    """A restored message with one recipient due now and one due in a minute: the first
    waits in its paused queue; the second's time passing must not route the first again
    (the item out reschedules the message when it settles)."""
    h: Harness = await make(notifier=False)
    operator = Operator(h.scheduler)
    operator.pause_queue("a.test")
    env = Envelope("MIXED", "s@x.test", [Recipient("a@a.test"), Recipient("b@b.test")], T0)
    env.recipients[1].next_attempt = T0 + 60
    h.spool.bodies["MIXED"] = BODY
    h.spool.saved["MIXED"] = Envelope("MIXED", "s@x.test", [], T0)
    h.scheduler.restore(env)
    h.scheduler.recovery_done()
    await idle()
    await h.advance(60)
    assert operator.status()["held"] == {"domain:a.test": 1}
    assert operator.resume_queue("a.test")
    await idle()
    assert sorted(r for s in h.transport.sent for r in s.recipients) == ["a@a.test", "b@b.test"]
    assert h.spool.removed == ["MIXED"]


async def test_mail_of_a_paused_job_can_be_deleted(make) -> None:
    h: Harness = await make(notifier=False)
    operator = Operator(h.scheduler)
    operator.pause_job("spring")
    env = h.submit("a@a.test", "b@b.test", job="spring")
    await idle()
    reply = await ask(h, cmd="delete", job="spring")
    assert reply == {"ok": True, "deleted": 2, "busy": 0}
    await idle()
    assert sorted(e.recipient for e in h.of(Bounced)) == ["a@a.test", "b@b.test"]  # type: ignore[attr-defined]
    assert h.spool.removed == [env.queue_id]
    assert operator.resume_job("spring")
    await idle()
    assert h.transport.sent == []
