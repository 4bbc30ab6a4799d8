"""Shared throttle decisions per second against a local redis-server (src/outrider/cluster/).

    nice -n 10 .venv/bin/python bench/cluster_rate.py [--seconds 3] [--keys 100]

Starts its own redis-server (no persistence) on a free loopback port and measures, with
the redis-py asyncio client the daemon uses: GCRA decisions one at a time (one round
trip each, what a lone connection pays), 64 concurrent callers (many queues at once),
reservations of 4 admissions per round trip (a connection with work waiting), and
lease acquire + release pairs. Each figure is decisions (admissions or leases) per
second; Redis' own CPU is the limit to watch, not the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from outrider.cluster.client import ClusterClient, ClusterOptions
from outrider.cluster.throttle import RedisThrottle
from outrider.throttle.rate import RateLimit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(port: int, directory: str) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, cwd=directory, stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


async def measure(name: str, seconds: float, tasks: int, step: object) -> None:
    done = calls = 0
    deadline = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal done, calls
        while time.perf_counter() < deadline:
            got = await step(i)  # type: ignore[operator]
            done += got  # after the await: ``done += await ...`` would lose updates
            calls += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(tasks)))
    elapsed = time.perf_counter() - start
    print(f"{name:<44} {done / elapsed:>10,.0f} /s  ({calls / elapsed:,.0f} calls/s)")


async def run(url: str, seconds: float, keys: int) -> None:
    options = ClusterOptions(url, node="bench", prefix="bench:", timeout=1.0)
    throttle = RedisThrottle(ClusterClient(options))
    await throttle.client.start()
    assert throttle.client.up
    fast = RateLimit(1e-9)  # always admits: measures the decision, not the limit

    async def one(i: int) -> int:
        slots, _ = await throttle.reserve(f"q{i % keys}", fast, time.time())
        return len(slots)

    async def four(i: int) -> int:
        slots, _ = await throttle.reserve(f"q{i % keys}", fast, time.time(), 4, 0.2)
        return len(slots)

    async def lease(i: int) -> int:
        code, _ = await throttle.lease(f"c{i % keys}", 1_000_000)
        await throttle.release(f"c{i % keys}")
        return 1 if code == 0 else 0

    await measure("GCRA, 1 caller, 1 per round trip", seconds, 1, one)
    await measure("GCRA, 64 callers, 1 per round trip", seconds, 64, one)
    await measure("GCRA, 64 callers, 4 reserved per round trip", seconds, 64, four)
    await measure("lease + release, 64 callers", seconds, 64, lease)
    print(f"failed calls: {throttle.client.failures} {throttle.client.last_error}")
    await throttle.client.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--keys", type=int, default=100)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        proc = start_redis(port, directory)
        try:
            try:
                import uvloop

                uvloop.install()
            except ImportError:
                pass
            asyncio.run(run(f"redis://127.0.0.1:{port}/0", args.seconds, args.keys))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


if __name__ == "__main__":
    main()
