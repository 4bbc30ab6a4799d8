"""How long the console's look-ups take over a big queue (no daemon, no sockets).

Usage (from the repository root; not part of ``make test``)::

    .venv/bin/python bench/console_lookup.py            # 100,000 deferred messages
    .venv/bin/python bench/console_lookup.py --messages 20000 --domains 50

It fills a scheduler (in-memory spool, scripted transport) with one-recipient messages
waiting for their retry time, spread over ``--domains`` domains, then times the
inventory walk behind ``show queues``/``list`` (done in slices of
``console.YIELD_EVERY`` messages, the event loop running between them) and the
aggregation into queue views (one pass, not sliced), and prints both.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from outrider.config.loader import parse_config
from outrider.message.envelope import Envelope, Recipient
from outrider.queue.console import YIELD_EVERY, Console
from outrider.queue.model import QueuedMessage
from outrider.queue.scheduler import Scheduler
from outrider.queue.summary import queue_views

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the scripted transport and memory spool are test support
    sys.path.insert(0, str(ROOT))

from tests.support.fake_transport import FakeTransport  # noqa: E402
from tests.support.memory_spool import MemorySpool  # noqa: E402

CONFIG = """
[server]
hostname = "mta.outrider.test"
state-dir = "{state}"
[dns]
nameservers = ["127.0.0.1:9"]
[[listener]]
address = "127.0.0.1:0"
"""


async def measure(messages: int, domains: int) -> None:
    with tempfile.TemporaryDirectory() as state:
        config = parse_config(CONFIG.format(state=state))
        scheduler = Scheduler(config=config, spool=MemorySpool(), transports=FakeTransport())  # type: ignore[arg-type]
        now = time.time()
        for i in range(messages):
            rcpt = Recipient(f"r{i}@d{i % domains}.test", attempts=1, next_attempt=now + 3600)
            env = Envelope(f"M{i}", "s@x.test", [rcpt], now, size=2000)
            scheduler.messages[env.queue_id] = QueuedMessage(env, None)
        console = Console(scheduler)
        start = time.perf_counter()
        rows = await console.rows()
        walked = time.perf_counter()
        views = queue_views(rows, console.live(), now)
        done = time.perf_counter()
        slices = -(-messages // YIELD_EVERY)
        print(
            f"{messages} messages over {domains} domains: inventory {walked - start:.3f}s "
            f"in {slices} slices (about {(walked - start) / slices * 1000:.0f} ms each), "
            f"queue views {done - walked:.3f}s, {len(views)} queues"
        )
        await scheduler.stop(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--domains", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(measure(args.messages, args.domains))


if __name__ == "__main__":
    main()
