"""Memory per queued message in the scheduler, without sockets or disk.

Builds a real :class:`~outrider.queue.scheduler.Scheduler` over a spool that keeps
nothing and a transport whose every connection fails (the bench's closed port), then
hands it ``N`` single-recipient messages for 1,000 domains, as spool recovery or the
hand-off would (envelopes decoded from their spool JSON, so no string is shared by
accident), and waits until every one is deferred. Prints the RSS and traced bytes per
queued message and the largest allocation sites (``TOP``), so a change to what the
scheduler keeps is measured, not guessed.

    .venv/bin/python bench/scale_memory.py [N] [restore|submit] [TOP]

``TOP`` 0 turns tracemalloc off: the RSS growth is then the scheduler's alone
(tracemalloc's own bookkeeping costs more than the messages it traces).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.fake_transport import FakeTransport

from outrider.config.loader import parse_config
from outrider.message.envelope import Envelope, Recipient
from outrider.policy.outcome import local_outcome
from outrider.queue.scheduler import Scheduler
from outrider.spool.base import Spool
from outrider.spool.codec import decode_envelope, encode_envelope


class NullSpool(Spool):
    """Keeps nothing: only the scheduler's own memory is measured."""

    async def store(self, envelope: Envelope, body: object) -> None:  # type: ignore[override]
        return None

    async def load_body(self, queue_id: str) -> bytes:
        return b"Subject: x\r\n\r\nbody\r\n"

    async def open_body(self, queue_id: str) -> bytes:
        return await self.load_body(queue_id)

    async def record(self, envelope: Envelope, recipients: Sequence[Recipient]) -> None:
        return None

    async def remove(self, queue_id: str) -> None:
        return None

    def recover(self) -> Iterator[Envelope]:
        return iter(())

    async def close(self) -> None:
        return None


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def envelope(i: int, now: float) -> Envelope:
    env = Envelope(
        queue_id=f"{int(now * 1000):x}{i:08x}A",
        sender="bench@src.test",
        recipients=[Recipient(f"u{i}@d{i % 1000}.scale.test")],
        received_at=now,
        size=1000,
        client_address="127.0.0.1",
        helo="injector.test",
        listener="127.0.0.1:2525",
        msg_id=f"<{time.time_ns()}.u{i}@mail.src.test>",  # real mail has one; it is kept
    )
    return decode_envelope(encode_envelope(env))


async def run(n: int, mode: str, top: int) -> None:
    import tempfile

    state = tempfile.mkdtemp(prefix="scale-memory-")
    config = parse_config(
        f"""
[server]
spool-dir = "{state}/spool"
state-dir = "{state}/state"
log-dir = "{state}/log"
[[listener]]
address = "127.0.0.1:2525"
[domain."*"]
retry-after = ["1h"]
mx-rollup = false
"""
    )
    transport = FakeTransport()
    failure = local_outcome(451, "4.4.1", "Connection refused")
    for d in range(1000):
        transport.open_failures[f"d{d}.scale.test"] = failure
    sched = Scheduler(config=config, spool=NullSpool(), transports=transport)
    if mode == "restore":
        sched.recovery_done()
    now = time.time()
    gc.collect()
    await asyncio.sleep(0.2)
    rss0 = rss_kib()
    trace = top > 0
    if trace:
        tracemalloc.start(3)
        snap0 = tracemalloc.take_snapshot()
    # One at a time, as spool recovery and the hand-off give them (a list built first
    # would hold every envelope at once and measure that peak, not what is kept).
    envs = (envelope(i, now) for i in range(n))
    t0 = time.process_time()
    for i, env in enumerate(envs):
        if mode == "restore":
            sched.restore(env)
        else:
            sched.submit(env, None)
        if i % 2000 == 0:
            await asyncio.sleep(0)
    while any(m.inflight for m in sched.messages.values()) or sched.ctx.tasks:
        await asyncio.sleep(0.2)
        if all(m.inflight == 0 for m in sched.messages.values()):
            break
    cpu = time.process_time() - t0
    await asyncio.sleep(0.5)
    gc.collect()
    rss1 = rss_kib()
    print(f"{n} messages ({mode}), {len(sched.messages)} queued, CPU {cpu * 1e6 / n:.0f} us/msg")
    print(f"RSS {rss1 / 1024:.0f} MiB; growth per message: {(rss1 - rss0) * 1024 / n:.0f} B")
    if not trace:
        return
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    diff = snap1.compare_to(snap0, "lineno")
    print(f"traced per message: {sum(s.size_diff for s in diff) / n:.0f} B")
    for stat in diff[:top]:
        frame = stat.traceback[0]
        where = f"{frame.filename.rpartition('/src/')[2]}:{frame.lineno}"
        print(f"  {stat.size_diff / n:7.0f} B  {stat.count_diff / n:5.2f} obj  {where}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    mode = sys.argv[2] if len(sys.argv) > 2 else "restore"
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(n, mode, top))


if __name__ == "__main__":
    main()
