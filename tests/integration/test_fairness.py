"""A backlog of 100,000 messages for one domain must not delay another domain's mail.

Runs the queue manager in-process (with an in-memory spool) against real loopback
SMTP sinks, so the backlog is built in seconds rather than injected over SMTP.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from outrider.config.loader import parse_config
from outrider.delivery.dns import MxResolver
from outrider.delivery.smtp_transport import SmtpTransport
from outrider.message.envelope import Envelope, Recipient
from outrider.message.ids import new_queue_id
from outrider.queue.scheduler import Scheduler
from tests.support.memory_spool import MemorySpool
from tests.support.smtp_server import ScriptedSmtpServer

BACKLOG = 100_000


@pytest.mark.slow
async def test_backlog_of_100k_does_not_starve_another_domain(tmp_path: Path) -> None:
    async with (
        ScriptedSmtpServer(host="127.0.0.2") as slow,
        ScriptedSmtpServer(host="127.0.0.3") as fast,
    ):
        config = parse_config(
            f"""
[server]
hostname = "mta.outrider.test"
state-dir = "{tmp_path}/state"
[dns]
nameservers = ["127.0.0.1:9"]
[[listener]]
address = "127.0.0.1:0"
[domain."*"]
retry-after = ["1s"]
[domain."backlog.test"]
route = "127.0.0.2:{slow.port}"
max-msg-rate = "5/s"
max-smtp-out = 2
[domain."fast.test"]
route = "127.0.0.3:{fast.port}"
"""
        )
        spool = MemorySpool()
        manager = Scheduler(
            config=config,
            spool=spool,  # type: ignore[arg-type]
            transports=SmtpTransport(
                config, MxResolver(["127.0.0.1:9"], timeout=0.5, lifetime=1.0)
            ),
        )
        body = b"Subject: backlog\r\n\r\nx\r\n"
        started = time.perf_counter()
        for _ in range(BACKLOG):
            env = Envelope(new_queue_id(), "s@x.test", [Recipient("r@backlog.test")], time.time())
            spool.bodies[env.queue_id] = body
            manager.submit(env, body)
        submit_seconds = time.perf_counter() - started
        [queue] = manager.queues.values()
        assert len(queue.ready) >= BACKLOG - 10

        env = Envelope(new_queue_id(), "s@x.test", [Recipient("r@fast.test")], time.time())
        t0 = time.monotonic()
        manager.submit(env, body)
        [msg] = await fast.wait_for_messages(1, timeout=5)
        latency = time.monotonic() - t0
        assert msg.rcpts == ("r@fast.test",)
        assert latency < 1.0, latency
        assert len(slow.messages) < 50  # the backlog is still being paced at 5/s
        # Scheduling stays cheap at this size: well under 100 µs per message.
        assert submit_seconds / BACKLOG < 100e-6, submit_seconds
        await manager.stop(1.0)
