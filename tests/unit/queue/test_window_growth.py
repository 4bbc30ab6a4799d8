"""A backlog for one destination gets the connections its growing window allows.

The adaptive window starts at 5 and grows with successful deliveries; new connections
used to be opened only when mail arrived, so a backlog queued at once was sent over
the first 5 connections however far the window grew.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from outrider.config.loader import parse_config
from outrider.delivery.transport import DeliveryReport, Opened, Route
from outrider.message.envelope import Envelope, Recipient
from outrider.queue.scheduler import Scheduler
from outrider.spool.reader import Body
from tests.support.fake_transport import FakeConnection, FakeTransport
from tests.support.memory_spool import MemorySpool


@dataclass
class SlowTransport(FakeTransport):
    """Each delivery takes a few ms (a distant server); counts concurrent connections."""

    open_now: int = 0
    most_open: int = 0
    delivered: int = field(default=0)

    async def open(self, route: Route) -> Opened:
        opened = await super().open(route)
        assert opened.connection is not None
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        return Opened(SlowConnection(self, route))


@dataclass
class SlowConnection(FakeConnection):
    async def deliver(
        self, envelope: Envelope, recipients: list[Recipient], body: Body
    ) -> DeliveryReport:
        await asyncio.sleep(0.005)
        assert isinstance(self.transport, SlowTransport)
        self.transport.delivered += 1
        return await super().deliver(envelope, recipients, body)

    async def close(self) -> None:
        assert isinstance(self.transport, SlowTransport)
        if self.usable:
            self.transport.open_now -= 1
        await super().close()


async def test_backlog_opens_connections_as_the_window_grows(tmp_path: Path) -> None:
    config = parse_config(
        f'[server]\nhostname = "mta.test"\nstate-dir = "{tmp_path}/state"\n'
        '[dns]\nnameservers = ["127.0.0.1:9"]\n[[listener]]\naddress = "127.0.0.1:0"\n'
        '[domain."far.test"]\nmax-smtp-out = 20\n'
    )
    transport = SlowTransport()
    spool = MemorySpool()
    scheduler = Scheduler(config=config, spool=spool, transports=transport)
    body = b"Subject: x\r\n\r\nx\r\n"
    for i in range(400):
        env = Envelope(f"Q{i}", "s@x.test", [Recipient(f"r{i}@far.test")], time.time())
        spool.bodies[env.queue_id] = body
        scheduler.submit(env, body)
    for _ in range(400):
        if transport.delivered == 400:
            break
        await asyncio.sleep(0.01)
    assert transport.delivered == 400
    assert transport.most_open > 10  # beyond the initial window of 5
    await scheduler.stop(0.1)
