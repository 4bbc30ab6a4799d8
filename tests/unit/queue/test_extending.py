"""The examples of docs/extending.md run as written: the custom transport under the real
scheduler (nothing in queue/ knows about it, yet it gets routing, retries and events),
and the event subscriber."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

from outrider.config.loader import parse_config
from outrider.config.model import DomainPolicy
from outrider.delivery.transport import Transport
from outrider.events.types import Deferred, Delivered, Event
from outrider.message.envelope import Envelope, Recipient
from outrider.queue.scheduler import Scheduler
from tests.support.fake_transport import FakeTransport
from tests.support.memory_spool import MemorySpool

DOC = Path(__file__).parents[3] / "docs" / "extending.md"


def _doc_blocks(heading: str) -> list[str]:
    section = DOC.read_text().split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def _doc_transport() -> Any:
    namespace: dict[str, Any] = {}
    exec(_doc_blocks("Adding a transport")[0], namespace)
    return namespace["FileTransport"]


async def test_a_custom_transport_plugs_in_through_the_selector(tmp_path: Path) -> None:
    config = parse_config(
        f'[server]\nhostname = "mta.test"\nstate-dir = "{tmp_path}/state"\n'
        '[dns]\nnameservers = ["127.0.0.1:9"]\n[[listener]]\naddress = "127.0.0.1:0"\n'
    )
    mail = tmp_path / "mail"
    mail.mkdir()
    files = _doc_transport()(mail)
    smtp = FakeTransport()

    def select(domain: str, policy: DomainPolicy) -> Transport:
        return files if domain == "example.test" else smtp

    spool = MemorySpool()
    scheduler = Scheduler(config=config, spool=spool, transports=select)
    seen: list[Event] = []
    scheduler.bus.subscribe(type("Sub", (), {"handle": lambda self, ev: seen.extend(ev)})())
    body = b"Subject: hi\r\n\r\nhello\r\n"
    env = Envelope("Q1", "s@x.test", [Recipient("a@example.test"), Recipient("b@far.test")], 0)
    env.received_at = time.time()
    spool.bodies["Q1"] = body
    scheduler.submit(env, body)
    for _ in range(50):
        await asyncio.sleep(0)
    assert (mail / "example.test.mbox").read_bytes() == b"From s@x.test\n" + body
    assert [s.recipients for s in smtp.sent] == [["b@far.test"]]
    assert sorted(e.queue for e in seen if isinstance(e, Delivered)) == [
        "far.test/default",
        "file:example.test/default",
    ]
    assert spool.removed == ["Q1"]

    # A full disk is a 4xx: retried on the normal schedule, like any SMTP deferral.
    (mail / "example.test.mbox").unlink()
    mail.rmdir()
    env2 = Envelope("Q2", "s@x.test", [Recipient("c@example.test")], time.time())
    spool.bodies["Q2"] = body
    scheduler.submit(env2, body)
    for _ in range(50):
        await asyncio.sleep(0)
    [deferred] = [e for e in seen if isinstance(e, Deferred)]
    assert deferred.status == "4.3.1"
    await scheduler.stop(0.1)


async def test_the_doc_subscriber_counts_outcomes(tmp_path: Path) -> None:
    config = parse_config(
        f'[server]\nhostname = "mta.test"\nstate-dir = "{tmp_path}/state"\n'
        '[dns]\nnameservers = ["127.0.0.1:9"]\n[[listener]]\naddress = "127.0.0.1:0"\n'
    )
    transport = FakeTransport()
    scheduler = Scheduler(config=config, spool=MemorySpool(), transports=transport)
    namespace: dict[str, Any] = {"scheduler": scheduler}
    exec(_doc_blocks("Adding an event subscriber")[0], namespace)
    counter = scheduler.bus._subscribers[-1]
    env = Envelope("Q1", "s@x.test", [Recipient("a@a.test")], time.time())
    scheduler.submit(env, b"Subject: x\r\n\r\nx\r\n")
    for _ in range(50):
        await asyncio.sleep(0)
    assert counter.delivered == {"a.test/default": 1}
    await scheduler.stop(0.1)
