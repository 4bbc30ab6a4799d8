"""Queue scale: a large deferred backlog, and what it costs (run by ``bench/scale.sh``).

One ``outrider run`` in a temp dir, everything on loopback:

* ``MESSAGES`` single-recipient messages for ``DOMAINS`` domains (``d0.scale.test`` ...)
  routed to a closed loopback port: every first attempt fails to connect and the
  recipient is deferred for an hour, so the whole backlog stays queued;
* ``live.test`` routed to a sink in this process that accepts everything.

Figures (one table at the end; see bench/README.md):

* injection rate (msg/s) in a window of ``WINDOW`` messages at an empty queue and again
  with the backlog queued;
* delivery-process CPU per message in those two windows (hand-off, schedule, the
  attempt, the deferral and its spool record): the scheduler's cost per delivery attempt;
* RSS of the delivery process and of all outrider processes after the backlog is queued;
* a burst of ``BURST`` messages to the live sink at an empty queue: RSS before, peak,
  and after it is delivered;
* fresh mail: 100 messages for the live destination with the backlog queued, time from
  the first MAIL to the last one received at the sink;
* restart: SIGTERM, then a new start on the full spool; time to the first 250 for a
  client that tries every 50 ms from the moment the process is started, and time to the
  "recovered N queued message(s)" log line.

The injector is a small asyncio SMTP client: ``CONNECTIONS`` sessions, many messages
each, MAIL/RCPT/DATA pipelined.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

HOST = "127.0.0.1"
BODY = b"Subject: scale\r\nFrom: <bench@src.test>\r\n\r\n" + b"x" * 900 + b"\r\n"


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value else default


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def status_kib(pid: int, key: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


# ------------------------------------------------------------------------------- the sink


@dataclass
class Sink:
    """Accepts every message; counts them and notes when each arrived."""

    port: int = field(default_factory=free_port)
    arrivals: list[float] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._serve, HOST, self.port))
            ready.set()
            try:
                loop.run_forever()
            finally:
                server.close()

        threading.Thread(target=run, name="sink", daemon=True).start()
        ready.wait(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go\r\n")
                    await writer.drain()
                    await reader.readuntil(b"\r\n.\r\n")
                    self.arrivals.append(time.monotonic())
                    writer.write(b"250 2.0.0 ok\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    @property
    def count(self) -> int:
        return len(self.arrivals)


# --------------------------------------------------------------------------- the injector


async def _expect(reader: asyncio.StreamReader, code: bytes) -> None:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            if not line.startswith(code):
                raise RuntimeError(f"expected {code!r}, got {line!r}")
            return


async def _session(port: int, rcpts: list[str]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    await _expect(reader, b"220")
    writer.write(b"EHLO injector.test\r\n")
    await _expect(reader, b"250")
    for rcpt in rcpts:
        writer.write(b"MAIL FROM:<bench@src.test>\r\nRCPT TO:<%s>\r\nDATA\r\n" % rcpt.encode())
        await _expect(reader, b"250")
        await _expect(reader, b"250")
        await _expect(reader, b"354")
        # Each message its own Message-ID, as real mail has (the scheduler keeps it).
        mid = b"Message-ID: <%d.%s@mail.src.test>\r\n" % (
            time.time_ns(),
            rcpt.split("@")[0].encode(),
        )
        writer.write(mid + BODY + b".\r\n")
        await _expect(reader, b"250")
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


def inject(port: int, rcpts: list[str], connections: int) -> float:
    """Send one message to each of ``rcpts``; the wall time taken."""
    chunks = [rcpts[i::connections] for i in range(connections)]
    start = time.monotonic()

    async def run() -> None:
        await asyncio.gather(*(_session(port, c) for c in chunks if c))

    asyncio.run(run())
    return time.monotonic() - start


def backlog_rcpts(start: int, count: int, domains: int) -> list[str]:
    return [f"u{i}@d{i % domains}.scale.test" for i in range(start, start + count)]


# ----------------------------------------------------------------------------- the daemon


@dataclass
class Daemon:
    outrider: str
    workdir: Path
    port: int
    sink_port: int
    proc: subprocess.Popen[bytes] | None = None

    def write_config(self) -> Path:
        closed = free_port()  # nothing listens there: every attempt is refused
        text = f"""
[server]
hostname = "scale.outrider.test"
spool-dir = "{self.workdir}/spool"
log-dir = "{self.workdir}/log"
state-dir = "{self.workdir}/state"

[dns]
nameservers = ["127.0.0.1:{free_port()}"]

[[listener]]
address = "{HOST}:{self.port}"
relay-networks = ["127.0.0.0/8"]
max-messages-per-connection = 0
max-rcpt-per-connection = 0
max-connections-per-client = 0
max-connect-rate-per-client = "unlimited"

[domain."*"]
route = "127.0.0.1:{closed}"
retry-after = ["1h"]
mx-rollup = false

[domain."live.test"]
route = "127.0.0.1:{self.sink_port}"
max-smtp-out = 10
"""
        path = self.workdir / "outrider.toml"
        path.write_text(text)
        return path

    def start(self) -> float:
        """Start the process; the monotonic time it was started at."""
        log = open(self.workdir / "daemon.log", "ab")  # noqa: SIM115
        at = time.monotonic()
        self.proc = subprocess.Popen(
            [self.outrider, "run", "-c", str(self.workdir / "outrider.toml")],
            stdout=log,
            stderr=log,
            cwd=self.workdir,
        )
        return at

    def log_has(self, needle: str, offset: int = 0) -> bool:
        with open(self.workdir / "daemon.log", "rb") as fh:
            fh.seek(offset)
            return needle.encode() in fh.read()

    def log_line(self, needle: str, offset: int = 0) -> str:
        """The text after ``needle`` on the first log line holding it ("" if none)."""
        with open(self.workdir / "daemon.log", "rb") as fh:
            fh.seek(offset)
            for line in fh.read().decode(errors="replace").splitlines():
                if needle in line:
                    return line[line.index(needle) + len(needle) :].strip()
        return ""

    def log_size(self) -> int:
        path = self.workdir / "daemon.log"
        return path.stat().st_size if path.exists() else 0

    def wait_ready(self, offset: int, timeout: float = 600) -> None:
        wait(lambda: self.log_has("started:", offset), timeout, "daemon start")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> tuple[int, int]:
        main = status_kib(self.pid)
        return main, main + sum(status_kib(p) for p in children(self.pid))

    def wait_idle(self, quiet: float = 1.0, timeout: float = 3600) -> None:
        """Until the delivery process used under 3% of a core for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        last = cpu_seconds(self.pid)
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = cpu_seconds(self.pid)
            if now - last < 0.03 * quiet:
                return
            last = now

    def stop(self) -> float:
        assert self.proc is not None
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(600)
        self.proc = None
        return time.monotonic() - start


def wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def _command(f: BinaryIO, line: bytes | None, code: bytes) -> None:
    if line is not None:
        f.write(line)
        f.flush()
    while True:
        reply = f.readline()
        if not reply:
            raise ConnectionError("closed")
        if reply[3:4] != b"-":
            if not reply.startswith(code):
                raise ConnectionError(reply)
            return


def first_250(port: int, started: float, timeout: float = 600) -> float:
    """Seconds from ``started`` to the first message accepted with 250."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=5) as s:
                f = s.makefile("rwb")
                _command(f, None, b"220")
                _command(f, b"EHLO probe.test\r\n", b"250")
                _command(f, b"MAIL FROM:<probe@src.test>\r\n", b"250")
                _command(f, b"RCPT TO:<probe@live.test>\r\n", b"250")
                _command(f, b"DATA\r\n", b"354")
                _command(f, BODY + b".\r\n", b"250")
                return time.monotonic() - started
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("no 250 after restart")


# -------------------------------------------------------------------------------- the run


def window(d: Daemon, start: int, count: int, domains: int, conns: int) -> tuple[float, float]:
    """Inject ``count`` backlog messages; (msg/s, delivery CPU ms per message)."""
    d.wait_idle()
    cpu0 = cpu_seconds(d.pid)
    took = inject(d.port, backlog_rcpts(start, count, domains), conns)
    d.wait_idle()
    cpu = cpu_seconds(d.pid) - cpu0
    return count / took, cpu * 1000 / count


def main() -> int:
    messages = env_int("MESSAGES", 1_000_000)
    domains = env_int("DOMAINS", 1000)
    conns = env_int("CONNECTIONS", 10)
    win = min(env_int("WINDOW", 10_000), messages // 2)
    burst = env_int("BURST", 20_000)
    outrider = os.environ.get("OUTRIDER") or str(Path(sys.executable).parent / "outrider")
    base = Path(os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    workdir = Path(tempfile.mkdtemp(prefix="outrider-scale-", dir=base))
    keep = os.environ.get("KEEP", "0") == "1"
    sink = Sink()
    sink.start()
    d = Daemon(outrider, workdir, free_port(), sink.port)
    d.write_config()
    rows: list[tuple[str, str]] = []

    def note(name: str, value: str) -> None:
        rows.append((name, value))
        print(f"{time.strftime('%H:%M:%S')} scale: {name}: {value}", file=sys.stderr, flush=True)

    try:
        d.start()
        d.wait_ready(0)
        d.wait_idle()
        before = d.rss()
        live = [f"b{i}@live.test" for i in range(burst)]
        peak = [0, 0]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.2):
                main_kib, total = d.rss()
                peak[0], peak[1] = max(peak[0], main_kib), max(peak[1], total)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        inject(d.port, live, conns)
        wait(lambda: sink.count >= burst, 600, "burst delivered")
        sampling.set()
        sampler.join()
        d.wait_idle(quiet=2.0)
        time.sleep(3)
        after = d.rss()
        note(
            f"burst of {burst} delivered: delivery RSS before / peak / after",
            f"{mib(before[0])} / {mib(peak[0])} / {mib(after[0])}",
        )

        # One message per domain first: the 1,000 delivery queues exist before the window
        # at an empty queue, as they do before the window at a full one.
        inject(d.port, backlog_rcpts(0, domains, domains), conns)
        rate_empty, cpu_empty = window(d, domains, win, domains, conns)
        note(f"injection rate, {win} at an empty queue", f"{rate_empty:.0f} msg/s")
        note(f"delivery CPU per message, {win} queued", f"{cpu_empty:.3f} ms")
        t0 = time.monotonic()
        first = domains + win
        rest = messages - first - win
        step = 100_000
        for start in range(first, first + rest, step):
            inject(d.port, backlog_rcpts(start, min(step, first + rest - start), domains), conns)
            print(f"  queued {min(start + step, first + rest)}", file=sys.stderr, flush=True)
        bulk = time.monotonic() - t0
        d.wait_idle(quiet=2.0)
        note(f"bulk injection of {rest}", f"{bulk:.0f} s ({rest / bulk:.0f} msg/s)")
        rate_full, cpu_full = window(d, messages - win, win, domains, conns)
        note(f"injection rate, {win} at {messages - win} queued", f"{rate_full:.0f} msg/s")
        note(f"delivery CPU per message, {messages} queued", f"{cpu_full:.3f} ms")
        note("injection rate full / empty", f"{rate_full / rate_empty:.2f}")
        d.wait_idle(quiet=2.0)
        main_kib, total = d.rss()
        note(f"RSS with {messages} queued: delivery process", mib(main_kib))
        note(f"RSS with {messages} queued: all outrider processes", mib(total))
        note("delivery RSS per queued message", f"{(main_kib - before[0]) * 1024 / messages:.0f} B")

        base_count = sink.count
        fresh = [f"f{i}@live.test" for i in range(100)]
        t0 = time.monotonic()
        inject(d.port, fresh, 5)
        wait(lambda: sink.count >= base_count + 100, 600, "fresh mail delivered")
        note(
            f"fresh mail: 100 messages to a live destination behind {messages} deferred",
            f"{sink.arrivals[base_count + 99] - t0:.2f} s",
        )

        offset = d.log_size()
        stopped = d.stop()
        note("stop (SIGTERM to exit)", f"{stopped:.1f} s")
        snapshot = d.log_line("wrote the schedule snapshot:", offset) or (
            "none: " + d.log_line("no schedule snapshot:", offset)
        )
        note("stop: schedule snapshot", snapshot)
        offset = d.log_size()
        started = d.start()
        first = first_250(d.port, started)
        wait(lambda: d.log_has("recovered ", offset), 600, "recovery")
        recovered = time.monotonic() - started
        d.wait_ready(offset)
        note("restart: time to first 250", f"{first:.2f} s")
        note(f"restart: time to {messages} recovered", f"{recovered:.1f} s")
        note("restart: how", d.log_line("from the spool:", offset))
        d.wait_idle(quiet=2.0)
        main_kib, total = d.rss()
        note("RSS after restart: delivery process / all", f"{mib(main_kib)} / {mib(total)}")
        d.stop()
    finally:
        if d.proc is not None:
            d.proc.kill()
            d.proc.wait()
        if keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    width = max(len(name) for name, _ in rows)
    print(f"\nqueue scale: MESSAGES={messages} DOMAINS={domains} CONNECTIONS={conns}")
    print(f"| {'figure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
