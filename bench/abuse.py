"""Inbound abuse against the real daemon: idle connections, slowloris, a connection burst.

Usage (from the repository root; not part of ``make test``)::

    .venv/bin/python bench/abuse.py                       # 5000 idle, 2x1000 slowloris, burst
    .venv/bin/python bench/abuse.py --receivers 2         # per-client limits, 2 receivers
    .venv/bin/python bench/abuse.py --daemon-nofile 1024  # started with systemd's fd limit
    .venv/bin/python bench/abuse.py --phases idle --idle 2000
    .venv/bin/python bench/abuse.py --src /tmp/head/src   # another tree, e.g. git archive HEAD

It starts ``outrider run`` on a loopback port with a generated config (``relay-networks``
only 127.0.0.1/32, so clients bound to 127.0.0.2 and up are untrusted strangers; mail for
example.org to a loopback sink; DNS at a loopback test server), then runs the phases in
order, each bounded in time, while a trusted client (127.0.0.1, a process of its own)
sends a message every 0.5 s and records its time-to-250. It prints, per phase: what the
attacking clients were told (greeted, each 421 text, resets), when the daemon closed
idle connections, the legitimate client's p50/p99/max time-to-250 and refusals, and the
daemon's resident memory (main process and receiver processes) before, at peak and after.
Every process it starts is stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the shared clients live with the test support code
    sys.path.insert(0, str(ROOT))

from tests.support.abuse import (  # noqa: E402
    GREETED,
    AbuseClient,
    Attempt,
    burst_worker,
    open_many,
    percentile,
    source_addresses,
    tally,
)
from tests.support.daemon import DaemonHandle, free_port, wait_port, write_config  # noqa: E402
from tests.support.dns_server import DnsTestServer  # noqa: E402
from tests.support.legit_probe import Probe  # noqa: E402
from tests.support.proc_tree import (  # noqa: E402
    cpu_seconds,
    descendants,
    socket_count,
    tree_rss_kib,
)
from tests.support.smtp_server import ScriptedSmtpServer  # noqa: E402

HOSTNAME = "mta.outrider.test"
SINK_HOST = "127.0.0.254"  # never a client source address (those end in .2 ... .250)
TARGET_LEGIT_SECONDS = 1.0


@dataclass
class Options:
    phases: tuple[str, ...]
    receivers: int
    idle: int
    max_connections: int
    per_client: int
    rate: str
    command_timeout: float
    data_timeout: float
    slowloris: int
    data_slowloris: int
    trickle_interval: float
    slowloris_seconds: float
    burst_rate: float
    burst_seconds: float
    burst_addresses: int
    burst_workers: int
    open_concurrency: int
    daemon_nofile: int | None
    src: Path | None
    keep: bool

    def total_limit(self) -> int:
        """The most the listener could admit: max-connections in each receiver when each
        keeps its own gate (the total phase must go past it either way)."""
        return self.max_connections * max(1, self.receivers)


@dataclass
class Window:
    """A stretch of the run whose legitimate-client probes are reported together."""

    name: str
    start: float
    end: float = math.inf


@dataclass
class Report:
    """Everything measured, printed at the end."""

    options: Options
    windows: list[Window] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)  # (section, text)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (time, KiB of the tree)
    marks: dict[str, float] = field(default_factory=dict)  # named times, for RSS lookups
    held_idle: int = 0  # idle connections the daemon greeted and held

    def add(self, section: str, text: str) -> None:
        self.lines.append((section, text))
        print(f"[{section}] {text}", flush=True)

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[None]:
        w = Window(name, time.monotonic())
        self.windows.append(w)
        try:
            yield
        finally:
            w.end = time.monotonic()

    def rss_at(self, when: float) -> int:
        """The first sample taken at or after ``when`` (the last one if none)."""
        for t, kib in self.rss:
            if t >= when:
                return kib
        return self.rss[-1][1] if self.rss else 0

    def rss_peak(self, start: float, end: float) -> int:
        return max((kib for t, kib in self.rss if start <= t <= end), default=0)


class Source:
    """Hands out fresh untrusted source addresses, so each test of a limit starts clean."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, count: int) -> list[str]:
        out = source_addresses(count, first=self.next)
        self.next += count
        return out


def spread(addresses: Sequence[str], per_address: int, total: int) -> list[str]:
    """``total`` connection sources, ``per_address`` from each address in turn."""
    return [addresses[i // per_address] for i in range(total)]


def summary(values: Sequence[float]) -> str:
    if not values:
        return "n=0"
    return (
        f"n={len(values)} p50={percentile(values, 50):.3f}s "
        f"p99={percentile(values, 99):.3f}s max={max(values):.3f}s"
    )


def outcome_text(counts: Counter[str]) -> str:
    return ", ".join(f"{n} x {what}" for what, n in counts.most_common()) or "none"


# -- the daemon -----------------------------------------------------------------------


def start_daemon(opts: Options, workdir: Path, dns: DnsTestServer, sink_port: int) -> DaemonHandle:
    port = free_port()
    handle = write_config(
        workdir,
        port=port,
        dns=dns.address,
        relay_domains=("example.org",),
        receiver_processes=opts.receivers,
        relay_networks=("127.0.0.1/32",),
        domain_defaults=f"smtp-port = {sink_port}\n",
    )
    handle.edit_config(
        "max-rcpt-per-message = 100\n",
        "max-rcpt-per-message = 100\n"
        f"max-connections = {opts.max_connections}\n"
        f"max-connections-per-client = {opts.per_client}\n"
        f'max-connect-rate-per-client = "{opts.rate}"\n'
        f'command-timeout = "{opts.command_timeout}s"\n'
        f'data-timeout = "{opts.data_timeout}s"\n',
    )
    exe = Path(sys.executable).with_name("outrider")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "outrider"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if opts.src is not None:  # another tree (e.g. `git archive HEAD src`) before the checkout's
        env["PYTHONPATH"] = str(opts.src)
    log = open(handle.log_path, "ab")  # noqa: SIM115 - the child owns it
    handle.proc = subprocess.Popen(
        [*cmd, "run", "-c", str(handle.config_path), "--log-level", "INFO"],
        cwd=workdir,
        stdout=log,
        stderr=log,
        env=env,
    )
    log.close()
    wait_port(handle.host, handle.port, proc=handle.proc)
    handle.wait_ready()
    return handle


def daemon_nofile(pid: int) -> str:
    """The soft/hard RLIMIT_NOFILE of ``pid`` and its children, from /proc/<pid>/limits."""
    out = []
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/limits").read_text().splitlines():
                if line.startswith("Max open files"):
                    soft, hard = line.split()[3:5]
                    out.append(f"pid {p}: {soft}/{hard}")
    return ", ".join(out)


@contextlib.contextmanager
def started_with_fd_limit(soft: int | None) -> Iterator[None]:
    """Children started inside get ``soft`` as their soft open-files limit, as from a
    service manager (systemd's default is 1024); this process gets its own back after."""
    if soft is None:
        yield
        return
    old, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old, hard))


def open_fds(pid: int) -> int:
    """File descriptors open in ``pid`` and its descendants."""
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{p}/fd"))
    return total


def receiver_sockets(d: DaemonHandle) -> int:
    """Sockets held by the receiver processes (or by the daemon when it has none)."""
    return sum(socket_count(p) for p in descendants(d.pid) or [d.pid])


async def settle(d: DaemonHandle, at_most: int, timeout: float = 30.0) -> None:
    """Wait (bounded) until the receivers hold at most ``at_most`` sockets (plus the
    trusted client's): they have read the closes of the connections just dropped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if receiver_sockets(d) <= at_most + 1:
            return
        await asyncio.sleep(0.05)


async def sample_rss(report: Report, pid: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        report.rss.append((time.monotonic(), sum(tree_rss_kib(pid).values())))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


# -- phases ---------------------------------------------------------------------------


async def phase_idle(report: Report, d: DaemonHandle, src: Source) -> None:
    """Idle connections up to the per-client limit from many addresses; then the per-client
    and total limits probed from fresh addresses; then wait for the command timeout."""
    o = report.options
    section = "idle"
    addresses = src.take(math.ceil(o.idle / o.per_client))
    base = receiver_sockets(d)  # listening and internal sockets
    report.marks["idle-before"] = time.monotonic()
    with report.window(f"idle: opening {o.idle}"):
        t0 = time.monotonic()
        clients = await open_many(
            d.host,
            d.port,
            spread(addresses, o.per_client, o.idle),
            concurrency=o.open_concurrency,
            hostname=HOSTNAME,
        )
        opened = time.monotonic() - t0
    held = [c for c in clients if c.record.greeted]
    report.held_idle = len(held)
    # Read from them from now on, so each hang-up is timed when it happens.
    deadline = time.monotonic() + o.command_timeout + 60.0
    watching = asyncio.gather(*(c.hold(deadline) for c in held))
    report.add(
        section,
        f"{o.idle} connections from {len(addresses)} addresses in {opened:.1f}s: "
        f"{outcome_text(tally(c.record for c in clients))}",
    )
    report.add(section, f"daemon fds open: {open_fds(d.pid)} ({daemon_nofile(d.pid)})")
    with report.window(f"idle: {len(held)} held"):
        await asyncio.sleep(2.0)
        report.marks["idle-held"] = time.monotonic()
        await asyncio.sleep(1.0)
    # Per client: more than the limit from a few fresh addresses, all held at once.
    probe_addresses = src.take(3)
    attempts = 2 * o.per_client + 5
    with report.window("idle: per-client probe"):
        probes = await open_many(
            d.host, d.port, spread(probe_addresses, attempts, 3 * attempts), hostname=HOSTNAME
        )
    per_address = Counter(c.record.source for c in probes if c.record.greeted)
    report.add(
        section,
        f"per-client limit {o.per_client}: {attempts} attempts from each of 3 fresh addresses, "
        f"admitted {sorted(per_address.get(a, 0) for a in probe_addresses)}; "
        f"{outcome_text(tally(c.record for c in probes))}",
    )
    for c in probes:
        c.close()
    # Total: fill the listener past max-connections from fresh addresses, and hold.
    room = o.total_limit() - len(held)
    fill_n = max(0, room) + 100
    fill_addresses = src.take(math.ceil(fill_n / o.per_client))
    with report.window("idle: max-connections full"):
        fill = await open_many(
            d.host, d.port, spread(fill_addresses, o.per_client, fill_n), hostname=HOSTNAME
        )
        await asyncio.sleep(3.0)
    admitted = sum(1 for c in fill if c.record.greeted)
    report.add(
        section,
        f"max-connections {o.max_connections}: {fill_n} more from {len(fill_addresses)} fresh "
        f"addresses: {outcome_text(tally(c.record for c in fill))}; held in all "
        f"{len(held) + admitted}",
    )
    with report.window("idle: closing those"):
        for c in fill:
            c.close()
        await settle(d, base + len(held))
    # Idle ones: when does the daemon's command-timeout close them?
    with report.window("idle: waiting for command-timeout"):
        await watching
    closed = [c.record for c in held if c.record.hung_up is not None]
    ages = [r.hung_up - r.started for r in closed if r.hung_up is not None]
    report.add(
        section,
        f"command-timeout {o.command_timeout:g}s: {len(closed)} of {len(held)} idle connections "
        f"closed by the daemon, after {summary(ages)} from connect; last replies: "
        f"{outcome_text(Counter(r.last for r in closed))}",
    )
    for c in held:
        c.close()
    await asyncio.sleep(2.0)
    report.marks["idle-after"] = time.monotonic()


async def phase_slowloris(report: Report, d: DaemonHandle, src: Source) -> None:
    """Clients that send a command a byte at a time, and ones that trickle a message body,
    next to a control group of idle ones; for a few command timeouts."""
    o = report.options
    section = "slowloris"
    until = time.monotonic() + o.slowloris_seconds
    cmd_sources = spread(src.take(math.ceil(o.slowloris / o.per_client)), o.per_client, o.slowloris)
    data_sources = spread(
        src.take(math.ceil(o.data_slowloris / o.per_client)), o.per_client, o.data_slowloris
    )
    control_sources = spread(src.take(5), o.per_client, 5 * o.per_client)
    command_line = b"EHLO " + b"slow" * 200 + b"\r\n"
    body = (b"Subject: slow\r\n\r\n" + b"x" * 70 + b"\r\n") * 1000

    gate = asyncio.Semaphore(500)  # clients connecting at once

    async def connect(client: AbuseClient) -> bool:
        async with gate:
            return await client.connect(30.0)

    async def command_slowloris(client: AbuseClient) -> None:
        if await connect(client):
            await client.trickle(command_line, o.trickle_interval, until)

    async def data_slowloris(client: AbuseClient) -> None:
        if not await connect(client):
            return
        for line in (
            b"EHLO slow.test",
            b"MAIL FROM:<slow@sender.test>",
            b"RCPT TO:<slow@example.org>",
            b"DATA",
        ):
            reply = await client.command(line, 30.0)
            if not reply.startswith(("250", "354")):
                return
        await client.trickle(body, o.trickle_interval, until)

    async def idle(client: AbuseClient) -> None:
        if await connect(client):
            await client.hold(until)

    cmd = [AbuseClient(d.host, d.port, s, hostname=HOSTNAME) for s in cmd_sources]
    data = [AbuseClient(d.host, d.port, s, hostname=HOSTNAME) for s in data_sources]
    control = [AbuseClient(d.host, d.port, s, hostname=HOSTNAME) for s in control_sources]

    report.marks["slowloris-before"] = time.monotonic()
    with report.window(f"slowloris: {o.slowloris}+{o.data_slowloris} trickling"):
        await asyncio.gather(
            *(command_slowloris(c) for c in cmd),
            *(data_slowloris(c) for c in data),
            *(idle(c) for c in control),
        )
    for name, group in (("command", cmd), ("DATA body", data), ("idle control", control)):
        records = [c.record for c in group]
        started = [r for r in records if r.greeted]
        closed = [r for r in started if r.hung_up is not None and r.hung_up < until - 0.5]
        ages = [r.hung_up - r.started for r in closed if r.hung_up is not None]
        report.add(
            section,
            f"{name}: {len(records)} clients ({outcome_text(tally(records))}); "
            f"{len(started) - len(closed)} still open after {o.slowloris_seconds:g}s "
            f"(byte every {o.trickle_interval:g}s, command-timeout {o.command_timeout:g}s, "
            f"data-timeout {o.data_timeout:g}s); {len(closed)} closed by the daemon after "
            f"{summary(ages)}: {outcome_text(Counter(r.last for r in closed))}",
        )
    for c in (*cmd, *data, *control):
        c.close()
    await asyncio.sleep(2.0)
    report.marks["slowloris-after"] = time.monotonic()


async def phase_burst(report: Report, d: DaemonHandle, src: Source) -> None:
    """``burst-rate`` connection attempts per second for ``burst-seconds`` from fresh
    untrusted addresses, by ``burst-workers`` client processes (one Python process cannot
    open 2,000 connections a second and read their replies on time); each attempt reads
    the first reply and hangs up."""
    o = report.options
    section = "burst"
    addresses = src.take(o.burst_addresses)
    workers = max(1, o.burst_workers)
    loop = asyncio.get_running_loop()
    report.marks["burst-before"] = time.monotonic()
    start_at = time.monotonic() + 3.0  # time for the workers to start
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        jobs = [
            loop.run_in_executor(
                pool,
                burst_worker,
                d.host,
                d.port,
                addresses[i::workers],
                o.burst_rate / workers,
                o.burst_seconds,
                HOSTNAME,
                start_at,
            )
            for i in range(workers)
        ]
        cpu_before = cpu_seconds(d.pid)
        w = Window(f"burst: {o.burst_rate:g}/s", start_at)
        report.windows.append(w)
        results = await asyncio.gather(*jobs)
        w.end = time.monotonic()
    records: list[Attempt] = [r for rs, _, _ in results for r in rs]
    achieved = sum(a for _, a, _ in results)
    client_cpu = sum(c for _, _, c in results)
    daemon_cpu = cpu_seconds(d.pid) - cpu_before
    span = w.end - w.start
    report.add(
        section,
        f"{len(records)} attempts from {len(addresses)} addresses, launched at {achieved:.0f}/s "
        f"by {workers} client process(es): {outcome_text(tally(records))}",
    )
    first_reply = [r.answered - r.started for r in records if r.answered is not None]
    report.add(
        section, f"first reply (220 after the 0.5 s pregreet delay, or 421): {summary(first_reply)}"
    )
    greeted = Counter(r.source for r in records if r.outcome == GREETED)
    report.add(
        section,
        f"rate {o.rate}: greeted per address min={min(greeted.values(), default=0)} "
        f"max={max(greeted.values(), default=0)} (attempts per address "
        f"{len(records) // max(1, len(addresses))})",
    )
    report.add(
        section,
        f"CPU over {span:.1f}s: daemon {daemon_cpu:.1f}s ({100 * daemon_cpu / span:.0f}% of one "
        f"core; {1000 * daemon_cpu / len(records):.2f}s per 1,000 attempts), "
        f"clients {client_cpu:.1f}s",
    )
    await asyncio.sleep(2.0)
    report.marks["burst-after"] = time.monotonic()


PHASES = {"idle": phase_idle, "slowloris": phase_slowloris, "burst": phase_burst}


# -- reporting ------------------------------------------------------------------------


_REFUSED = re.compile(r"refused: client=\S+ (?:listener=\S+: )?(.*)$")


def daemon_log_counts(d: DaemonHandle) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in d.log_text().splitlines():
        if m := _REFUSED.search(line):
            counts[f"refused: {m.group(1)}"] += 1
        elif "timeout: client=" in line:
            counts["timeout: client closed"] += 1
        elif "pregreet: client=" in line:
            counts["pregreet"] += 1
        elif " ERROR " in line or "Traceback" in line or "Too many open files" in line:
            counts[f"error: {line[-120:]}"] += 1
    return counts


def print_report(report: Report, probes: list[Probe], d: DaemonHandle) -> bool:
    """Print the figures; True when the legitimate client met the 1 s target throughout."""
    o = report.options
    print("\n== inbound abuse: figures ==")
    print(
        f"daemon: receiver-processes={o.receivers} max-connections={o.max_connections} "
        f"max-connections-per-client={o.per_client} max-connect-rate-per-client={o.rate} "
        f"command-timeout={o.command_timeout:g}s data-timeout={o.data_timeout:g}s "
        f"started with fd limit: {o.daemon_nofile or 'inherited'}; code: {o.src or 'the checkout'}"
    )
    for section, text in report.lines:
        print(f"  {section:10s} {text}")
    print("\nlegitimate client (127.0.0.1, relay-networks), one message every 0.5 s:")
    print(f"  {'window':38s} {'ok':>4s} {'fail':>4s}  time-to-250 p50 / p99 / max   failures")
    met = True
    for w in report.windows:
        inside = [p for p in probes if w.start <= p.started < w.end]
        ok = [p.seconds for p in inside if p.seconds is not None]
        failed = Counter(p.error for p in inside if p.seconds is None)
        if ok:
            times = f"{percentile(ok, 50):6.3f} / {percentile(ok, 99):6.3f} / {max(ok):6.3f} s"
        else:
            times = f"{'-':>6s} / {'-':>6s} / {'-':>6s}  "
        print(
            f"  {w.name:38s} {len(ok):4d} {sum(failed.values()):4d}  {times}   "
            f"{outcome_text(failed)}"
        )
        if failed or (ok and max(ok) > TARGET_LEGIT_SECONDS):
            met = False
    print("\ndaemon resident memory (main + receivers, VmRSS):")
    base = report.rss[0][1] if report.rss else 0
    print(
        f"  at start {base / 1024:.1f} MB; peak over the run "
        f"{max((k for _, k in report.rss), default=0) / 1024:.1f} MB"
    )
    for phase in o.phases:
        before = report.marks.get(f"{phase}-before")
        after = report.marks.get(f"{phase}-after")
        if before is None or after is None:
            continue
        print(
            f"  {phase:10s} before {report.rss_at(before) / 1024:7.1f} MB  "
            f"peak {report.rss_peak(before, after) / 1024:7.1f} MB  "
            f"after {report.rss_at(after) / 1024:7.1f} MB"
        )
    if "idle-held" in report.marks and "idle-before" in report.marks:
        held = report.rss_at(report.marks["idle-held"]) - report.rss_at(report.marks["idle-before"])
        n = max(1, report.held_idle)
        print(
            f"  idle: {held / 1024:.1f} MB for {report.held_idle} idle connections = "
            f"{held / 1024 / (n / 1000):.2f} MB per 1,000"
        )
    print("\ndaemon log:")
    for what, n in daemon_log_counts(d).most_common():
        print(f"  {n:7d}  {what}")
    print(
        f"\ntarget (legitimate client served within {TARGET_LEGIT_SECONDS:g} s throughout): "
        f"{'met' if met else 'MISSED'}"
    )
    return met


# -- main -----------------------------------------------------------------------------


def raise_own_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, need))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        print(f"warning: this process may open only {soft} files, {need} wanted", flush=True)


async def attack(report: Report, d: DaemonHandle) -> None:
    """The phases in order, with the daemon's memory sampled throughout."""
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(report, d.pid, stop))
    try:
        with report.window("baseline"):
            await asyncio.sleep(3.0)
        src = Source()
        for phase in report.options.phases:
            cpu = cpu_seconds(d.pid)
            began = time.monotonic()
            await PHASES[phase](report, d, src)
            spent = cpu_seconds(d.pid) - cpu
            report.add(
                phase,
                f"phase took {time.monotonic() - began:.0f}s; daemon CPU {spent:.1f}s",
            )
            if d.proc is not None and d.proc.poll() is not None:
                report.add(phase, f"DAEMON EXITED with {d.proc.returncode}")
                return
        with report.window("after"):
            await asyncio.sleep(3.0)
    finally:
        stop.set()
        await sampler


def collect_probes(prober: subprocess.Popen[bytes]) -> list[Probe]:
    """Stop the legitimate client (by its PID) and read its probes."""
    prober.send_signal(signal.SIGTERM)
    out, _ = prober.communicate(timeout=30)
    return [Probe(**json.loads(line)) for line in out.decode().splitlines() if line]


def run(opts: Options, workdir: Path) -> bool:
    """Start the sink, DNS and the daemon, attack, report; True when the target was met."""
    import uvloop

    dns = DnsTestServer(
        {"example.org": {"MX": [(10, "mx.example.org")]}, "mx.example.org": {"A": [SINK_HOST]}},
        zones=["org", "test"],
    )
    dns.start_in_thread()
    sink = ScriptedSmtpServer(host=SINK_HOST).start_in_thread()
    report = Report(opts)
    d: DaemonHandle | None = None
    prober: subprocess.Popen[bytes] | None = None
    try:
        with started_with_fd_limit(opts.daemon_nofile):
            d = start_daemon(opts, workdir, dns, sink.port)
        report.add("daemon", f"pid {d.pid}; RLIMIT_NOFILE soft/hard {daemon_nofile(d.pid)}")
        report.add("daemon", f"load average before: {Path('/proc/loadavg').read_text().strip()}")
        prober = subprocess.Popen(
            [sys.executable, "-m", "tests.support.legit_probe", "--port", str(d.port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        uvloop.run(attack(report, d))
        report.add("daemon", f"load average after: {Path('/proc/loadavg').read_text().strip()}")
    finally:
        probes = collect_probes(prober) if prober is not None else []
        alive = d is not None and d.proc is not None and d.proc.poll() is None
        met = print_report(report, probes, d) if d is not None and probes else False
        if d is not None and alive:
            print(f"daemon stopped with exit code {d.stop(timeout=60)}")
        elif d is not None:
            d.kill()
        sink.stop_thread()
        dns.stop()
    return met and alive


def parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--phases", default="idle,slowloris,burst", help="comma-separated, in order")
    p.add_argument("--receivers", type=int, default=1, help="receiver-processes (default 1)")
    p.add_argument("--idle", type=int, default=5000, help="idle connections to hold")
    p.add_argument("--max-connections", type=int, default=5500)
    p.add_argument("--per-client", type=int, default=20, help="max-connections-per-client")
    p.add_argument("--rate", default="60/m", help="max-connect-rate-per-client")
    p.add_argument("--command-timeout", type=float, default=20.0, help="seconds")
    p.add_argument("--data-timeout", type=float, default=20.0, help="seconds")
    p.add_argument("--slowloris", type=int, default=1000, help="command tricklers")
    p.add_argument("--data-slowloris", type=int, default=1000, help="DATA body tricklers")
    p.add_argument("--trickle-interval", type=float, default=4.0, help="seconds per byte")
    p.add_argument("--slowloris-seconds", type=float, default=60.0)
    p.add_argument("--burst-rate", type=float, default=2000.0, help="attempts per second")
    p.add_argument("--burst-seconds", type=float, default=5.0)
    p.add_argument("--burst-addresses", type=int, default=100)
    p.add_argument("--burst-workers", type=int, default=2, help="client processes for the burst")
    p.add_argument(
        "--open-concurrency", type=int, default=500, help="idle connections opening at once"
    )
    p.add_argument(
        "--daemon-nofile", type=int, default=None, help="start the daemon with this soft fd limit"
    )
    p.add_argument("--src", type=Path, default=None, help="run the daemon from this src/ tree")
    p.add_argument("--keep", action="store_true", help="keep the work dir (config, log)")
    a = p.parse_args(argv)
    phases = tuple(x for x in a.phases.split(",") if x)
    unknown = [x for x in phases if x not in PHASES]
    if unknown:
        p.error(f"unknown phase(s) {unknown}; choose from {sorted(PHASES)}")
    return Options(
        phases=phases,
        receivers=a.receivers,
        idle=a.idle,
        max_connections=a.max_connections,
        per_client=a.per_client,
        rate=a.rate,
        command_timeout=a.command_timeout,
        data_timeout=a.data_timeout,
        slowloris=a.slowloris,
        data_slowloris=a.data_slowloris,
        trickle_interval=a.trickle_interval,
        slowloris_seconds=a.slowloris_seconds,
        burst_rate=a.burst_rate,
        burst_seconds=a.burst_seconds,
        burst_addresses=a.burst_addresses,
        burst_workers=a.burst_workers,
        open_concurrency=a.open_concurrency,
        daemon_nofile=a.daemon_nofile,
        src=a.src.resolve() if a.src is not None else None,
        keep=a.keep,
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    raise_own_fd_limit(4 * opts.max_connections * max(1, opts.receivers) + 1000)
    workdir = Path(tempfile.mkdtemp(prefix="outrider-abuse-"))
    try:
        met = run(opts, workdir)
    finally:
        if opts.keep:
            print(f"kept {workdir} (config, daemon.log)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
