"""Soak: mixed load for SOAK_MINUTES with a kill -9 and restart every SOAK_KILL_EVERY s.

Usage (``make soak`` runs it with the defaults):

    .venv/bin/python bench/soak.py [--minutes 20] [--kill-every 120] [--rate 30] ...

Every option also reads an environment variable (SOAK_MINUTES, SOAK_KILL_EVERY,
SOAK_RATE, SOAK_RECEIVERS, SOAK_GREYLIST, SOAK_WINDOW, SOAK_DRAIN_TIMEOUT, SOAK_SEED,
SOAK_TMPDIR, SOAK_KEEP, OUTRIDER). The real daemon runs on loopback with a generated
config, DNS from the loopback test server and loopback SMTP sinks as the destinations;
clients relay and submit (STARTTLS + AUTH PLAIN) to deliverable, hard-bouncing and
greylisting recipients. After the load the queue drains, the daemon stops with SIGTERM
and the audit (bench/soak/audit.py) checks that every accepted message was delivered or
bounced exactly once. Exit status 1 on anything lost, double-accounted or unexplained.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(1, str(ROOT))  # tests.support (after bench/, which holds the soak package)

from soak.audit import Evidence, audit  # noqa: E402
from soak.clients import Channel, Ledger, Load  # noqa: E402
from soak.daemon import Daemon, become_subreaper  # noqa: E402
from soak.plan import SINK_HOSTS, dns_records  # noqa: E402
from soak.report import RunFacts, run_problems, summary  # noqa: E402
from soak.rig import (  # noqa: E402
    AUTH_PASSWORD,
    AUTH_USER,
    Settings,
    accounting_rows,
    config_text,
    dump_evidence,
    pick_ports,
    prepare,
    spool_files,
)
from soak.sinks import Greylist, RcptPolicy, Sinks, accept_all, hard_bounces  # noqa: E402
from tests.support.dns_server import DnsTestServer  # noqa: E402

RELAY_SHARE = 0.6  # of the rate; the rest goes through the submission listener
MIN_ACCEPTED_PER_MINUTE = 60  # below this the run exercised nothing: fail, not pass


def parse_args() -> Settings:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=float(env("SOAK_MINUTES", "20")))
    p.add_argument("--kill-every", type=float, default=float(env("SOAK_KILL_EVERY", "120")))
    p.add_argument("--rate", type=float, default=float(env("SOAK_RATE", "30")))
    p.add_argument("--receivers", type=int, default=int(env("SOAK_RECEIVERS", "1")))
    p.add_argument("--greylist", type=float, default=float(env("SOAK_GREYLIST", "20")))
    p.add_argument("--window", type=float, default=float(env("SOAK_WINDOW", "2")))
    p.add_argument("--drain-timeout", type=float, default=float(env("SOAK_DRAIN_TIMEOUT", "300")))
    p.add_argument("--seed", type=int, default=int(env("SOAK_SEED", str(random.randrange(2**32)))))
    p.add_argument("--outrider", default=env("OUTRIDER", str(ROOT / ".venv" / "bin" / "outrider")))
    p.add_argument("--tmpdir", default=env("SOAK_TMPDIR", "/var/tmp"))
    p.add_argument("--keep", action="store_true", default=env("SOAK_KEEP", "0") not in ("", "0"))
    a = p.parse_args()
    return Settings(
        a.minutes,
        a.kill_every,
        a.rate,
        a.receivers,
        a.greylist,
        a.window,
        a.drain_timeout,
        a.seed,
        a.outrider,
        a.tmpdir,
        a.keep,
    )


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def load_and_kill(
    daemon: Daemon, load: Load, ledger: Ledger, settings: Settings, started: float
) -> None:
    """Start the daemon and the load; kill -9 and restart every ``kill_every`` seconds."""
    daemon.start()
    daemon.start_sampling()
    load.start()
    say(f"load started: {settings.rate:g} msg/s for {settings.minutes:g} min")
    end = started + settings.minutes * 60
    next_kill = started + settings.kill_every
    while (now := time.monotonic()) < end:
        time.sleep(max(0.0, min(next_kill, end) - now))
        if next_kill <= time.monotonic() < end:
            kill = daemon.kill9_and_restart()
            next_kill += settings.kill_every
            say(
                f"kill -9 #{len(daemon.kills)} of pid {kill.pid} (receivers "
                f"{list(kill.receivers)}, orphans {list(kill.orphans)}); ready again in "
                f"{kill.restart_seconds:.1f}s; accepted so far {ledger.count('accepted')}"
            )


def main() -> int:
    settings = parse_args()
    if not become_subreaper():
        say("warning: cannot become a child subreaper; orphan checks rely on /proc only")
    workdir = Path(tempfile.mkdtemp(prefix="outrider-soak-", dir=settings.tmpdir))
    say(f"work dir {workdir} (seed {settings.seed})")
    dns = DnsTestServer(dns_records(), zones=["test"])
    dns.start_in_thread()
    ports = pick_ports(list(SINK_HOSTS.values()))
    greylist = Greylist(settings.greylist)
    policies: dict[str, RcptPolicy] = {
        "ok": accept_all,
        "bounce": hard_bounces,
        "defer": greylist,
        "dsn": accept_all,
    }
    sinks = Sinks({n: (SINK_HOSTS[n], p) for n, p in policies.items()}, ports.sinks)
    sinks.start()
    config = workdir / "outrider.toml"
    config.write_text(config_text(workdir, ports, dns.nameserver, settings))
    prepare(workdir, settings.outrider, config)
    daemon = Daemon(
        settings.outrider, config, workdir, (ports.relay, ports.submission), settings.receivers
    )
    ledger = Ledger()
    load = Load(
        [
            Channel("relay", "127.0.0.1", ports.relay, 3, settings.rate * RELAY_SHARE),
            Channel(
                "submission",
                "127.0.0.1",
                ports.submission,
                2,
                settings.rate * (1 - RELAY_SHARE),
                (AUTH_USER, AUTH_PASSWORD),
            ),
        ],
        ledger,
        settings.seed,
    )
    started = time.monotonic()
    problems: list[str] = []
    stuck: list[str] = []
    exit_code, drain_seconds = -1, 0.0
    try:
        try:
            load_and_kill(daemon, load, ledger, settings, started)
        except (RuntimeError, TimeoutError) as exc:  # the daemon would not (re)start
            problems.append(f"daemon: {exc}")
        stuck = load.stop()
        say(f"load stopped: {ledger.count('accepted')} accepted; draining the queue")
        drain_start = time.monotonic()
        while (
            daemon.running
            and spool_files(workdir / "spool")
            and time.monotonic() - drain_start < settings.drain_timeout
        ):
            time.sleep(0.5)
        drain_seconds = time.monotonic() - drain_start
        exit_code = daemon.stop()
        say(f"daemon stopped (exit {exit_code}); auditing")
    finally:
        load.stop()
        daemon.stop_sampling()
        if daemon.proc is not None:
            daemon.stop()
        sinks.stop()
        dns.stop()
    left = spool_files(workdir / "spool")
    wall = time.monotonic() - started

    evidence = Evidence(
        attempts=ledger.snapshot(),
        receipts=sinks.log.receipts,
        acknowledged=sinks.log.acknowledged,
        refusals=sinks.log.refusals,
        rows=accounting_rows(workdir / "log"),
        kills=[k.at for k in daemon.kills],
        window=settings.window,
    )
    result = audit(evidence)
    facts = RunFacts(
        minutes=settings.minutes,
        kill_every=settings.kill_every,
        rate=settings.rate,
        receivers=settings.receivers,
        seed=settings.seed,
        wall_seconds=wall,
        drain_seconds=drain_seconds,
        drained=not left,
        spool_left=left,
        exit_code=exit_code,
        starts=daemon.starts,
        kills=daemon.kills,
        max_rss_main_kib=daemon.max_rss_main_kib,
        max_rss_total_kib=daemon.max_rss_total_kib,
        client_errors=ledger.connection_errors,
        stuck_clients=stuck,
        deferral_replies=sum(1 for r in sinks.log.refusals if r.reply.startswith("4")),
        sink_protocol_errors=sinks.log.protocol_errors,
        daemon_log_problems=daemon.log_problems(),
    )
    problems += run_problems(facts)
    if sum(result.accepted.values()) < MIN_ACCEPTED_PER_MINUTE * settings.minutes:
        problems.append(f"only {sum(result.accepted.values())} messages accepted")
    text = summary(result, facts, problems)
    print("\n" + text, flush=True)
    out = ROOT / "bench" / "out" / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")
    failed = bool(problems) or result.failed
    for queue_id in sorted(set(result.lost_queue_ids))[:5]:
        print(f"\ndaemon log for lost {queue_id}:", *daemon.log_lines(queue_id), sep="\n  ")
    if failed or settings.keep:
        dump_evidence(
            workdir, evidence.attempts, evidence.receipts, evidence.refusals, daemon.kills
        )
        say(f"kept {workdir} (daemon.log, spool, log/, attempts/receipts/kills.csv)")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"summary in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
