"""Console verbs on the scheduler harness (fake clock, scripted transport): look-ups see
deferred mail in its queue; retry, delete, hold and release change the schedule."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from outrider.config.loader import parse_config
from outrider.events.types import Bounced, NoticeDue
from outrider.message.envelope import Envelope, RcptStatus, Recipient
from outrider.queue.console import Console
from outrider.queue.control import handle_request
from outrider.queue.control_state import ControlState
from outrider.queue.operator import Operator
from outrider.queue.scheduler import Scheduler
from tests.support.fake_transport import FakeTransport
from tests.support.memory_spool import MemorySpool
from tests.unit.queue import test_scheduler_transitions as transitions
from tests.unit.queue.test_scheduler_transitions import LATER, NO_USER, T0, Harness, idle

make = transitions.make  # the fake-clock harness fixture


async def ask(h: Harness, **request: Any) -> dict[str, Any]:
    return await handle_request(Operator(h.scheduler), request)


async def deferred_harness(make: Any, **kwargs: Any) -> Harness:
    h: Harness = await make(**kwargs)
    h.transport.replies["a@a.test"] = LATER
    h.transport.replies["b@a.test"] = LATER
    return h


async def test_deferred_mail_counts_in_its_queue(make: Any) -> None:
    h = await deferred_harness(make)
    h.submit("a@a.test", "b@a.test")
    await idle()
    [queue] = h.scheduler.queues.values()
    assert list(queue.ready) == []  # nothing ready: both wait for their retry time
    reply = await ask(h, cmd="queues")
    [view] = reply["queues"]
    assert view["queue"] == queue.name
    assert (view["recipients"], view["messages"], view["mode"]) == (2, 1, "normal")
    assert view["next_attempt"] is not None and view["last_error"] == str(LATER)
    listed = (await ask(h, cmd="list", queue="a.test"))["recipients"]
    assert [(r["rcpt"], r["attempts"]) for r in listed] == [("a@a.test", 1), ("b@a.test", 1)]
    assert all(r["next_attempt"] and r["queue"] == queue.name for r in listed)


async def test_queue_views_filter_sort_and_aggregate(make: Any) -> None:
    h = await deferred_harness(make)
    h.transport.replies["c@c.test"] = LATER
    h.submit("a@a.test", "b@a.test", job="spring")
    h.submit("c@c.test")
    await idle()
    queues = (await ask(h, cmd="queues", sort="recipients"))["queues"]
    assert [q["domain"] for q in queues] == ["a.test", "c.test"]
    assert [q["domain"] for q in (await ask(h, cmd="queues", domain="c.test"))["queues"]] == [
        "c.test"
    ]
    assert (await ask(h, cmd="queues", max=1))["queues"][0]["domain"] == "a.test"
    domains = (await ask(h, cmd="topdomains"))["domains"]
    assert [(d["domain"], d["recipients"]) for d in domains] == [("a.test", 2), ("c.test", 1)]
    jobs = (await ask(h, cmd="jobs"))["jobs"]
    assert jobs == [{"job": "spring", "recipients": 2, "messages": 1, "paused": False}]
    assert (await ask(h, cmd="queues", sort="nonsense"))["ok"] is False


async def test_show_message_has_recipients_and_headers(make: Any) -> None:
    h = await deferred_harness(make)
    env = h.submit("a@a.test")
    await idle()
    reply = await ask(h, cmd="message", id=env.queue_id)
    detail = reply["message"]
    assert detail["id"] == env.queue_id and detail["sender"] == "s@x.test"
    assert detail["recipients"][0]["state"] == "deferred"
    assert detail["headers"].startswith("Subject: test\r\n") and "hello" not in detail["headers"]
    body = (await ask(h, cmd="message", id=env.queue_id, body=True))["message"]["body"]
    assert body.endswith("hello\r\n")
    assert await ask(h, cmd="message", id="NOPE") == {
        "ok": False,
        "error": "no queued message NOPE",
    }


async def test_retry_makes_deferred_mail_go_now(make: Any) -> None:
    h = await deferred_harness(make)
    env = h.submit("a@a.test")
    await idle()
    assert len(h.transport.sent) == 1
    h.transport.replies.clear()
    assert await ask(h, cmd="retry", queue="a.test") == {"ok": True, "retried": 1, "matched": 1}
    await idle()
    assert len(h.transport.sent) == 2  # well before the 60 s retry time
    assert env.queue_id not in h.scheduler.messages  # delivered, so no longer queued
    assert (await ask(h, cmd="retry", all=True))["ok"] is False  # nothing queued any more
    reply = await ask(h, cmd="retry", queue="nowhere.test")
    assert reply == {"ok": False, "error": "no queued mail for queue nowhere.test"}


async def test_retry_leaves_its_timer_harmless(make: Any) -> None:
    """The message's old timer is cancelled: the retry is the only new attempt."""
    h = await deferred_harness(make)
    h.submit("a@a.test")
    await idle()
    await ask(h, cmd="retry", rcpt="A@a.test")
    await idle()
    assert len(h.transport.sent) == 2  # deferred again, next try 60 s later
    await h.advance(59)
    assert len(h.transport.sent) == 2
    await h.advance(1)
    assert len(h.transport.sent) == 3


async def test_delete_removes_recipients_with_a_record_each_and_no_dsn(make: Any) -> None:
    h = await deferred_harness(make)
    env = h.submit("a@a.test", "b@a.test")
    await idle()
    reply = await ask(h, cmd="delete", id=env.queue_id)
    assert reply == {"ok": True, "deleted": 2, "busy": 0}
    await idle()
    bounced = h.of(Bounced)
    assert sorted(e.recipient for e in bounced) == ["a@a.test", "b@a.test"]  # type: ignore[attr-defined]
    assert all("by the operator" in e.diagnostic for e in bounced)  # type: ignore[attr-defined]
    assert h.of(NoticeDue) == []
    assert h.spool.removed == [env.queue_id]
    await h.advance(120)
    assert len(h.transport.sent) == 1  # its timer went with it


async def test_delete_with_bounce_sends_a_failure_dsn(make: Any) -> None:
    h = await deferred_harness(make)
    env = h.submit("a@a.test")
    await idle()
    assert (await ask(h, cmd="delete", rcpt="a@a.test", bounce=True))["deleted"] == 1
    await idle()
    dsns = [s for s in h.transport.sent if s.sender == ""]
    assert [d.queue_id for d in dsns] == [f"{env.queue_id}-F"]
    assert b"by the operator" in dsns[0].body  # type: ignore[operator]
    assert env.queue_id in h.spool.removed


async def test_delete_one_recipient_keeps_the_others_scheduled(make: Any) -> None:
    h = await deferred_harness(make)
    env = h.submit("a@a.test", "b@a.test")
    await idle()
    assert (await ask(h, cmd="delete", rcpt="a@a.test"))["deleted"] == 1
    await idle()
    assert h.spool.saved[env.queue_id].recipients[0].status is RcptStatus.BOUNCED
    h.transport.replies.clear()
    await h.advance(60)
    assert [s.recipients for s in h.transport.sent[1:]] == [["b@a.test"]]
    assert h.spool.removed == [env.queue_id]


async def test_delete_of_mail_held_in_a_paused_queue(make: Any) -> None:
    h: Harness = await make()
    operator = Operator(h.scheduler)
    operator.pause_queue("a.test")
    env = h.submit("a@a.test")
    await idle()
    rows = await Console(h.scheduler).rows()
    assert [r.state for r in rows] == ["held"]
    assert (await ask(h, cmd="delete", queue="a.test"))["deleted"] == 1
    await idle()
    assert h.spool.removed == [env.queue_id]
    assert operator.resume_queue("a.test")
    await idle()
    assert h.transport.sent == []  # the deleted item did not come back


async def test_hold_and_release_a_message(make: Any) -> None:
    h: Harness = await make()
    h.transport.replies["a@a.test"] = LATER
    env = h.submit("a@a.test")
    await idle()
    assert await ask(h, cmd="hold", id=env.queue_id) == {"ok": True, "held": 1, "matched": 1}
    assert h.scheduler.ctx.control.held_messages == {env.queue_id}
    h.transport.replies.clear()
    await h.advance(120)
    assert len(h.transport.sent) == 1  # held: the retry did not go
    assert [r.state for r in (await Console(h.scheduler).rows())] == ["held"]
    assert await ask(h, cmd="release", id=env.queue_id) == {"ok": True, "released": 1}
    await idle()
    assert len(h.transport.sent) == 2
    assert h.scheduler.ctx.control.held_messages == set()
    reply = await ask(h, cmd="release", id=env.queue_id)
    assert reply == {"ok": False, "error": f"no held message for message {env.queue_id}"}


async def test_errors_name_what_does_not_exist(make: Any) -> None:
    h: Harness = await make()
    assert await ask(h, cmd="resume", queue="a.test") == {
        "ok": False,
        "error": "queue a.test is not paused",
    }
    assert await ask(h, cmd="resume-job", job="x") == {"ok": False, "error": "job x is not paused"}
    reply = await ask(h, cmd="backoff", queue="nowhere.test")
    assert reply == {"ok": False, "error": "no delivery queue matches nowhere.test"}
    paused = await ask(h, cmd="pause", queue="later.test")
    assert paused["ok"] is True and "nothing is queued for later.test" in paused["note"]
    assert (await ask(h, cmd="delete"))["error"].startswith("one of 'queue', 'id'")
    assert (await ask(h, cmd="delete", all=True))["error"].startswith("one of")
    assert (await ask(h, cmd="retry", job="x"))["error"].startswith("'job' is not accepted")


async def test_traffic_counters_by_window() -> None:
    from outrider.runtime.stats import BUCKET, TrafficCounters

    now = [T0]
    counters = TrafficCounters(lambda: now[0])
    counters.add("delivered", T0 - 3000)
    counters.add("delivered", T0 - 30)
    counters.add("bounced", T0)
    snap = counters.snapshot()
    assert snap["last_minute"]["delivered"] == 1 and snap["last_minute"]["bounced"] == 1
    assert snap["last_hour"]["delivered"] == 2 and snap["total"]["delivered"] == 2
    now[0] = T0 + 3600 + BUCKET
    assert counters.snapshot()["last_hour"]["delivered"] == 0
    assert counters.snapshot()["total"]["delivered"] == 2


POOL_CONFIG = """
[server]
hostname = "mta.outrider.test"
state-dir = "{state}"
default-virtual-mta = "both"
[dns]
nameservers = ["127.0.0.1:9"]
[[listener]]
address = "127.0.0.1:0"
[domain."*"]
retry-after = ["60s"]
[virtual-mta.a]
smtp-source-host = "127.0.0.10"
[virtual-mta.b]
smtp-source-host = "127.0.0.11"
[virtual-mta.solo]
smtp-source-host = "127.0.0.12"
[virtual-mta-pool.both]
virtual-mtas = ["a", "b"]
"""


async def test_disabled_source_ip_is_skipped_in_its_pool_and_defers_alone(
    tmp_path: Path,
) -> None:
    config = parse_config(POOL_CONFIG.format(state=tmp_path))
    transport = FakeTransport()
    spool = MemorySpool()
    scheduler = Scheduler(config=config, spool=spool, transports=transport)
    operator = Operator(scheduler)

    async def ask_pool(**request: Any) -> dict[str, Any]:
        return await handle_request(operator, request)

    try:
        assert await ask_pool(cmd="disable-source", ip="127.0.0.10") == {"ok": True, "vmtas": ["a"]}
        for i in range(4):
            env = Envelope(f"P{i}", "s@x.test", [Recipient(f"r{i}@a.test")], time.time())
            env.vmta = "both"
            spool.bodies[env.queue_id] = b"Subject: x\r\n\r\nx\r\n"
            scheduler.submit(env, spool.bodies[env.queue_id])
        await idle()
        assert [s.vmta for s in transport.sent] == ["b"] * 4  # a's address is disabled
        solo = Envelope("S0", "s@x.test", [Recipient("s@a.test")], time.time())
        solo.vmta = "solo"
        spool.bodies["S0"] = b"Subject: x\r\n\r\nx\r\n"
        assert (await ask_pool(cmd="disable-source", ip="127.0.0.12"))["vmtas"] == ["solo"]
        scheduler.submit(solo, spool.bodies["S0"])
        await idle()
        assert len(transport.sent) == 4  # deferred: its only source is disabled
        assert "4.4.5" in solo.recipients[0].last_reply
        vmtas = {v["vmta"]: v for v in (await ask_pool(cmd="vmtas"))["vmtas"]}
        assert vmtas["a"]["disabled"] and not vmtas["b"]["disabled"]
        assert await ask_pool(cmd="enable-source", ip="127.0.0.10") == {"ok": True}
        assert await ask_pool(cmd="enable-source", ip="127.0.0.10") == {
            "ok": False,
            "error": "source 127.0.0.10 is not disabled",
        }
        assert await ask_pool(cmd="disable-source", ip="192.0.2.99") == {
            "ok": False,
            "error": "no virtual MTA sends from 192.0.2.99",
        }
        assert ControlState.load(tmp_path).disabled_ips == {"127.0.0.12"}
    finally:
        await scheduler.stop(0.1)


async def test_hold_and_release_by_queue(make: Any) -> None:
    h = await deferred_harness(make)
    first = h.submit("a@a.test")
    second = h.submit("b@a.test")
    h.transport.replies["c@c.test"] = LATER
    other = h.submit("c@c.test")
    await idle()
    assert (await ask(h, cmd="hold", queue="a.test"))["held"] == 2
    assert h.scheduler.ctx.control.held_messages == {first.queue_id, second.queue_id}
    states = {r.rcpt: r.state for r in await Console(h.scheduler).rows()}
    assert states == {"a@a.test": "held", "b@a.test": "held", "c@c.test": "deferred"}
    assert (await ask(h, cmd="release", queue="a.test")) == {"ok": True, "released": 2}
    assert other.queue_id not in h.scheduler.ctx.control.held_messages


async def test_a_silent_delete_stays_out_of_a_later_failure_notice(make: Any) -> None:
    """The recorded reply (persisted with the state) keeps the deleted recipient out of
    the DSN owed when another recipient of the message bounces later."""
    h = await deferred_harness(make)
    env = h.submit("a@a.test", "b@a.test")
    await idle()
    assert (await ask(h, cmd="delete", rcpt="a@a.test"))["deleted"] == 1
    await idle()
    saved = h.spool.saved[env.queue_id].recipients[0]
    assert saved.last_reply.endswith("(no DSN)")
    h.transport.replies["b@a.test"] = NO_USER
    await h.advance(60)
    [dsn] = [s for s in h.transport.sent if s.sender == ""]
    assert b"b@a.test" in dsn.body  # type: ignore[operator]
    assert b"a@a.test" not in dsn.body  # type: ignore[operator]


async def test_resume_by_queue_name_lifts_the_pause_that_holds_it(make: Any) -> None:
    h: Harness = await make()
    operator = Operator(h.scheduler)
    h.submit("a@a.test")  # the queue exists before the pause
    await idle()
    operator.pause_queue("a.test")
    h.transport.replies["b@a.test"] = LATER
    h.submit("b@a.test")
    await idle()
    [view] = [v for v in (await ask(h, cmd="queues"))["queues"] if v["domain"] == "a.test"]
    assert view["mode"] == "paused"
    assert view["queue"] == "a.test/default"
    assert view["reason"] == "paused by the operator (pause on a.test)"
    assert (await ask(h, cmd="resume", queue=view["queue"]))["ok"] is True
    assert "a.test" not in h.scheduler.ctx.control.paused_queues
    assert (await ask(h, cmd="resume", queue=view["queue"]))["ok"] is False  # nothing left


async def test_show_message_of_a_message_whose_file_just_went(make: Any) -> None:
    h = await deferred_harness(make)
    env = h.submit("a@a.test")
    await idle()
    h.scheduler.messages[env.queue_id].body = None  # not cached: read from the spool
    del h.spool.bodies[env.queue_id]
    assert await ask(h, cmd="message", id=env.queue_id) == {
        "ok": False,
        "error": f"no queued message {env.queue_id}",
    }
