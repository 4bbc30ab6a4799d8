"""Config reload with queues in flight (no sockets: the queues are idle)."""

from __future__ import annotations

import time
from pathlib import Path

from outrider.config.loader import parse_config
from outrider.delivery.dns import MxResolver
from outrider.delivery.smtp_transport import SmtpTransport
from outrider.message.envelope import Envelope, Recipient
from outrider.message.ids import new_queue_id
from outrider.queue.operator import Operator
from outrider.queue.scheduler import Scheduler
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
    manager = Scheduler(
        config=config,
        spool=MemorySpool(),  # type: ignore[arg-type]
        transports=SmtpTransport(config, MxResolver(["127.0.0.1:9"], timeout=0.2, lifetime=0.5)),
    )
    Operator(manager).pause_queue("paused.test")
    env = Envelope(new_queue_id(), "s@x.test", [Recipient("r@paused.test")], time.time())
    env.vmta = "mta10"  # chosen by intake (sender-domain x.test)
    manager.submit(env, b"Subject: x\r\n\r\nx\r\n")
    [queue] = manager.queues.values()
    assert (queue.vmta, queue.policy.max_smtp_out) == ("mta10", 1)
    assert queue.msg_limit.interval == 0.1

    manager.update_config(parse_config(BASE.format(state=tmp_path, rate="2/s")))
    assert queue.policy.max_smtp_out == 20  # mta10 is gone: the global tables apply
    assert queue.msg_limit.interval == 0.5
    assert len(manager.holds.domains["paused.test"]) == 1  # still paused, still held
    await manager.stop(1.0)
