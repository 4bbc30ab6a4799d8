"""An outcome's accounting row reaches the OS before the spool records that outcome.

kill -9 loses what the process has not handed to the OS. If the spool kept a delivery
but its row was still in the writer's buffer, the row would be gone for good (the spool
never delivers that recipient again): the soak test (bench/soak.py) found exactly that,
tens of missing rows per kill. So each spool write of new recipient states must find
their rows already in the file on disk.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Sequence
from pathlib import Path

from outrider.accounting.subscriber import AccountingSubscriber
from outrider.accounting.writer import AccountingLog
from outrider.config.loader import parse_config
from outrider.message.envelope import Envelope, Recipient
from outrider.queue.scheduler import Scheduler
from outrider.smtp.replies import Reply
from tests.support.fake_transport import FakeTransport
from tests.support.memory_spool import MemorySpool

BODY = b"Subject: t\r\nMessage-ID: <m@x.test>\r\n\r\nhello\r\n"
CONFIG = """
[server]
hostname = "mta.outrider.test"
state-dir = "{state}"
[dns]
nameservers = ["127.0.0.1:9"]
[[listener]]
address = "127.0.0.1:0"
[domain."*"]
retry-after = ["1h"]
"""


def rows_on_disk(log_dir: Path) -> list[tuple[str, str]]:
    """(type, rcpt) of every row a fresh reader sees: what survives a kill -9 now."""
    found: list[tuple[str, str]] = []
    for path in sorted(log_dir.glob("acct-*.csv")):
        with open(path, newline="") as fh:
            found += [(r["type"], r["rcpt"]) for r in csv.DictReader(fh)]
    return found


class WatchingSpool(MemorySpool):
    """Notes, at each record and removal, which rows a crash right then would keep."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.seen_at_record: list[tuple[list[str], list[tuple[str, str]]]] = []
        self.seen_at_remove: list[list[tuple[str, str]]] = []

    async def record(self, envelope: Envelope, recipients: Sequence[Recipient]) -> None:
        changed = [r.address for r in recipients]
        self.seen_at_record.append((changed, rows_on_disk(self.log_dir)))
        await super().record(envelope, recipients)

    async def remove(self, queue_id: str) -> None:
        self.seen_at_remove.append(rows_on_disk(self.log_dir))
        await super().remove(queue_id)


async def idle() -> None:
    for _ in range(60):
        await asyncio.sleep(0)


async def run(tmp_path: Path, replies: dict[str, Reply], *rcpts: str) -> WatchingSpool:
    log_dir = tmp_path / "log"
    config = parse_config(CONFIG.format(state=tmp_path / "state"))
    spool = WatchingSpool(log_dir)
    scheduler = Scheduler(
        config=config, spool=spool, transports=FakeTransport(replies=replies), clock=lambda: 1e6
    )
    log = AccountingLog(log_dir, clock=lambda: 1e6)
    scheduler.bus.subscribe(AccountingSubscriber(log))
    env = Envelope("Q0001", "s@x.test", [Recipient(r) for r in rcpts], 1e6)
    spool.bodies[env.queue_id] = BODY
    spool.saved[env.queue_id] = Envelope(env.queue_id, env.sender, [], env.received_at)
    try:
        scheduler.submit(env, BODY)
        await idle()
    finally:
        await scheduler.stop(0.1)
        log.close()
    return spool


async def test_a_delivered_row_is_on_disk_before_the_message_leaves_the_spool(
    tmp_path: Path,
) -> None:
    spool = await run(tmp_path, {}, "a@a.test")
    assert spool.seen_at_remove == [[("d", "a@a.test")]]


async def test_deferred_and_delivered_rows_are_on_disk_before_their_states_are_recorded(
    tmp_path: Path,
) -> None:
    later = Reply(451, "4.3.0", "try again later")
    spool = await run(tmp_path, {"b@b.test": later}, "a@a.test", "b@b.test")
    recorded = [rcpt for changed, _ in spool.seen_at_record for rcpt in changed]
    assert sorted(recorded) == ["a@a.test", "b@b.test"]
    for changed, on_disk in spool.seen_at_record:
        for rcpt in changed:
            assert ("d" if rcpt == "a@a.test" else "t", rcpt) in on_disk, (changed, on_disk)
