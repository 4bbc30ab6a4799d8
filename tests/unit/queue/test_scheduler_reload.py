"""Config reload with queues in flight (no sockets: the queues are idle)."""

from __future__ import annotations

import time
from pathlib import Path

from outrider.accounting.writer import AccountingLog
from outrider.config.loader import parse_config
from outrider.delivery.dns import MxResolver
from outrider.message.envelope import Envelope, Recipient
from outrider.message.ids import new_queue_id
from outrider.queue.manager import QueueManager
from tests.support.memory_spool import MemorySpool

BASE = """
[server]
hostname = "mta.outrider.test"
state-dir = "{state}"
[dns]
nameservers = ["127.0.0.1:9"]
[[listener]]
address = "127.0.0.1:0"
[domain."paused.test"]
route = "127.0.0.1:9"
max-msg-rate = "{rate}"
"""

VMTA = """
[virtual-mta.mta10]
smtp-source-host = "127.0.0.10"
[virtual-mta.mta10.domain."paused.test"]
max-smtp-out = 1
[sender-domain."x.test"]
virtual-mta = "mta10"
"""


async def test_reload_applies_new_limits_and_survives_a_removed_vmta(tmp_path: Path) -> None:
    config = parse_config(BASE.format(state=tmp_path, rate="10/s") + VMTA)
    manager = QueueManager(
        config=config,
        spool=MemorySpool(),  # type: ignore[arg-type]
        resolver=MxResolver(["127.0.0.1:9"], timeout=0.2, lifetime=0.5),
        accounting=AccountingLog(tmp_path / "log"),
        new_queue_id=new_queue_id,
    )
    manager.pause_queue("paused.test")
    env = Envelope(new_queue_id(), "s@x.test", [Recipient("r@paused.test")], time.time())
    manager.submit(env, b"Subject: x\r\n\r\nx\r\n")
    [queue] = manager.queues.values()
    assert (queue.vmta, queue.policy.max_smtp_out) == ("mta10", 1)
    assert queue.msg_rate.interval == 0.1

    manager.update_config(parse_config(BASE.format(state=tmp_path, rate="2/s")))
    assert queue.policy.max_smtp_out == 20  # mta10 is gone: the global tables apply
    assert queue.msg_rate.interval == 0.5
    assert len(manager.parked_domains["paused.test"]) == 1  # still paused, still held
    await manager.stop(1.0)
    manager.accounting.close()
