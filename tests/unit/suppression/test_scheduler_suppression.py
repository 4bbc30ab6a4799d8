"""Suppressed recipients at the scheduler: settled at once, never attempted, no DSN."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from outrider.accounting.records import FIELDS
from outrider.accounting.subscriber import row_of
from outrider.events.types import Bounced, Delivered, MessageDone, NoticeDue
from outrider.message.envelope import Envelope, RcptStatus, Recipient
from outrider.queue.scheduler import Scheduler
from outrider.smtp.replies import Reply
from outrider.suppression.store import SuppressionStore
from tests.unit.queue.test_scheduler_transitions import Harness, idle, make  # noqa: F401

NO_USER_SENDER = "bounces@news.test"


def _store(tmp_path: Path, h: Harness) -> SuppressionStore:
    store = SuppressionStore(tmp_path / "suppression.db", clock=h.clock)
    h.scheduler.suppression = store
    return store


async def test_suppressed_recipient_is_settled_without_attempt_or_dsn(make, tmp_path) -> None:  # noqa: F811
    h: Harness = await make()
    store = _store(tmp_path, h)
    store.add("gone@a.test", "news.test", "bad-mailbox")
    store.add("Global@b.test", None, "complaint")
    env = h.submit("gone@a.test", "ok@a.test", "global@b.test", sender=NO_USER_SENDER)
    await idle()
    assert [s.recipients for s in h.transport.sent] == [["ok@a.test"]]
    bounced = h.of(Bounced)
    assert [(e.recipient, e.status, e.category) for e in bounced] == [  # type: ignore[attr-defined]
        ("gone@a.test", "5.7.1", "suppressed"),
        ("global@b.test", "5.7.1", "suppressed"),
    ]
    assert bounced[0].diagnostic.startswith(  # type: ignore[attr-defined]
        "550 5.7.1 <gone@a.test> is suppressed (bad-mailbox, "
    )
    rows = [row_of(e) for e in bounced]
    cat = FIELDS.index("bounceCat")
    assert [(r[0], r[cat]) for r in rows if r is not None] == [
        ("b", "suppressed"),
        ("b", "suppressed"),
    ]
    assert [e.recipient for e in h.of(Delivered)] == ["ok@a.test"]  # type: ignore[attr-defined]
    assert h.of(NoticeDue) == []
    assert [s for s in h.transport.sent if s.sender == ""] == []
    assert env.recipients[0].attempts == 0
    assert env.queue_id in h.spool.removed
    store.close()


async def test_all_suppressed_message_is_removed_at_once(make, tmp_path) -> None:  # noqa: F811
    h: Harness = await make()
    store = _store(tmp_path, h)
    store.add("a@a.test", "x.test", "unsubscribe")
    env = h.submit("a@a.test", sender="s@x.test")
    await idle()
    assert h.transport.sent == []
    assert env.recipients[0].status is RcptStatus.BOUNCED
    assert [e.queue_id for e in h.of(MessageDone)] == [env.queue_id]  # type: ignore[attr-defined]
    assert h.of(NoticeDue) == []
    assert h.scheduler.pending_messages == 0
    # another sender domain's mail to the same address goes out
    h.submit("a@a.test", sender="s@other.test")
    await idle()
    assert [s.recipients for s in h.transport.sent] == [["a@a.test"]]
    store.close()


async def test_empty_list_and_restored_mail_are_not_checked(make, tmp_path) -> None:  # noqa: F811
    h: Harness = await make()
    store = _store(tmp_path, h)
    h.submit("a@a.test")
    await idle()
    assert len(h.transport.sent) == 1
    store.add("b@a.test")
    env = Envelope("R0001", "s@x.test", [], h.clock.now)
    from outrider.message.envelope import Recipient

    env.recipients.append(Recipient("b@a.test"))
    h.spool.bodies[env.queue_id] = b"Subject: r\r\n\r\nx\r\n"
    h.scheduler.restore(env)
    await idle()
    assert [s.recipients for s in h.transport.sent][-1] == ["b@a.test"]
    store.close()


async def test_suppressed_recipients_are_recorded_under_their_domain(make, tmp_path) -> None:  # noqa: F811
    """The bounce names the recipient's domain as its queue and the message's vmta, and
    the spool record carries exactly the recipients the suppression settled."""
    h: Harness = await make()
    h.transport.replies["ok@a.test"] = Reply(451, "4.3.0", "later")
    store = _store(tmp_path, h)
    store.add("gone@a.test")
    store.add("gone@b.test")
    h.submit("gone@a.test", "ok@a.test", "gone@b.test")
    await idle()
    got = [(e.recipient, e.queue, e.vmta) for e in h.of(Bounced)]  # type: ignore[attr-defined]
    assert got == [("gone@a.test", "a.test", "default"), ("gone@b.test", "b.test", "default")]
    assert h.spool.recorded[0] == ["gone@a.test", "gone@b.test"]
    store.close()


async def test_suppressed_pool_mail_is_recorded_with_its_pool(make, tmp_path) -> None:  # noqa: F811
    """No member was chosen: the bounce names the pool as its vmta and as its vmtaPool,
    like every other record of the message."""
    pool = (
        '[virtual-mta.a]\nsmtp-source-host = "127.0.0.10"\n'
        '[virtual-mta-pool.both]\nvirtual-mtas = ["a"]\n'
    )
    h: Harness = await make(tables=pool)
    store = _store(tmp_path, h)
    store.add("gone@a.test")
    env = Envelope("POOLED", "s@x.test", [Recipient("gone@a.test")], h.clock.now)
    env.vmta = "both"
    h.spool.bodies["POOLED"] = b"Subject: p\r\n\r\nx\r\n"
    h.spool.saved["POOLED"] = Envelope("POOLED", "s@x.test", [], env.received_at)
    h.scheduler.submit(env, h.spool.bodies["POOLED"])
    await idle()
    [bounced] = h.of(Bounced)
    assert (bounced.vmta, bounced.pool) == ("both", "both")  # type: ignore[attr-defined]
    row = dict(zip(FIELDS, row_of(bounced) or (), strict=True))
    assert (row["vmta"], row["vmtaPool"]) == ("both", "both")
    store.close()


async def test_a_broken_list_lets_the_mail_go_out(make, tmp_path) -> None:  # noqa: F811
    """Failing open: the list is a courtesy, the mail was accepted."""
    h: Harness = await make()
    store = _store(tmp_path, h)
    store.add("a@a.test")

    def broken(*args: object) -> dict[str, object]:
        raise sqlite3.OperationalError("database disk image is malformed")

    store.check = broken  # type: ignore[method-assign]
    env = h.submit("a@a.test")
    await idle()
    assert [s.recipients for s in h.transport.sent] == [["a@a.test"]]
    assert env.recipients[0].status is RcptStatus.DELIVERED
    assert h.of(Bounced) == []
    store.close()


async def test_a_scheduler_built_with_a_list_checks_it(make, tmp_path) -> None:  # noqa: F811
    h: Harness = await make()
    store = SuppressionStore(tmp_path / "suppression.db", clock=h.clock)
    store.add("gone@a.test")
    scheduler = Scheduler(
        config=h.scheduler.config,
        spool=h.spool,
        transports=h.transport,
        clock=h.clock,
        suppression=store,
    )
    scheduler.bus.subscribe(h)
    try:
        env = Envelope("SUPP", "s@x.test", [Recipient("gone@a.test")], h.clock.now)
        h.spool.bodies["SUPP"] = b"Subject: s\r\n\r\nx\r\n"
        scheduler.submit(env, h.spool.bodies["SUPP"])
        await idle()
        assert [(e.recipient, e.category) for e in h.of(Bounced)] == [  # type: ignore[attr-defined]
            ("gone@a.test", "suppressed")
        ]
        assert h.transport.sent == []
    finally:
        await scheduler.stop(0.1)
        store.close()
