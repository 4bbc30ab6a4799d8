"""The summary table printed at the end of a soak run (and saved under bench/out/)."""

from __future__ import annotations

from dataclasses import dataclass

from soak.audit import Audit
from soak.daemon import Kill


@dataclass(frozen=True)
class RunFacts:
    """What the run itself measured, beside the audit."""

    minutes: float
    kill_every: float
    rate: float
    receivers: int
    seed: int
    wall_seconds: float
    drain_seconds: float
    drained: bool
    spool_left: list[str]
    exit_code: int  # of the final SIGTERM
    starts: int
    kills: list[Kill]
    max_rss_main_kib: int
    max_rss_total_kib: int
    client_errors: int  # connections that failed (mostly while the daemon restarted)
    stuck_clients: list[str]
    deferral_replies: int  # 4xx answers given by the deferring sink
    sink_protocol_errors: list[str]
    daemon_log_problems: tuple[int, list[str]]  # WARNING/ERROR/traceback lines: count, first


def run_problems(facts: RunFacts) -> list[str]:
    """Failures of the run itself (the audit has its own)."""
    problems = []
    if not facts.drained:
        problems.append(f"spool not drained: {len(facts.spool_left)} file(s) left")
    if any("quarantine" in f for f in facts.spool_left):
        problems.append("quarantined spool files")
    if facts.exit_code != 0:
        problems.append(f"SIGTERM exit status {facts.exit_code}")
    orphans = [p for k in facts.kills for p in k.orphans]
    if orphans:
        problems.append(f"receiver processes outlived a kill and were killed: {orphans}")
    if facts.stuck_clients:
        problems.append(f"client threads stuck: {facts.stuck_clients}")
    if facts.sink_protocol_errors:
        errors = facts.sink_protocol_errors
        problems.append(f"{len(errors)} bad command(s) at the sinks, e.g. {errors[:3]}")
    return problems


def summary(audit: Audit, facts: RunFacts, problems: list[str]) -> str:
    restarts = [k.restart_seconds for k in facts.kills]
    accepted = sum(audit.accepted.values())
    rows = [
        ("accepted (250)", f"{accepted}  ({_by_channel(audit)})"),
        (
            "accepted-but-unknown",
            f"{audit.accepted_but_unknown}  (250 lost in a kill, seen at a sink)",
        ),
        ("not acknowledged", f"{audit.unknown} unknown, never seen; {audit.refused} refused"),
        ("recipients checked", str(audit.recipients)),
        ("delivered", str(audit.delivered)),
        ("bounced (DSN received)", f"{audit.bounced}  in {audit.dsns} DSNs"),
        (
            "deferred-then-delivered",
            f"{audit.deferred_then_delivered}  ({facts.deferral_replies} 4xx replies given)",
        ),
        ("duplicates", _explained(audit.duplicates)),
        ("lost", str(len(audit.lost))),
        (
            "accounting rows",
            " ".join(f"{t}={n}" for t, n in sorted(audit.rows.items())) or "none",
        ),
        ("accounted exactly once", f"{audit.exactly_once}"),
        ("accounting: missing rows", _explained(audit.missing_rows)),
        ("accounting: extra rows", _explained(audit.double_rows)),
        ("kills (kill -9)", str(len(facts.kills))),
        ("restarts", f"{facts.starts - 1}  (kill to ready: max {max(restarts, default=0):.1f}s)"),
        ("orphaned receivers", str(sum(len(k.orphans) for k in facts.kills))),
        ("max RSS main process", f"{facts.max_rss_main_kib / 1024:.1f} MiB (VmHWM)"),
        ("max RSS main + receivers", f"{facts.max_rss_total_kib / 1024:.1f} MiB (1 s samples)"),
        ("client connection errors", str(facts.client_errors)),
        ("drain after load", f"{facts.drain_seconds:.1f}s, spool left: {len(facts.spool_left)}"),
        ("SIGTERM exit status", str(facts.exit_code)),
        ("daemon log warnings/errors", str(facts.daemon_log_problems[0])),
        ("wall time", f"{facts.wall_seconds / 60:.1f} min"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [
        f"soak: {facts.minutes:g} min, kill -9 every {facts.kill_every:g}s, "
        f"{facts.rate:g} msg/s, receiver-processes={facts.receivers}, seed {facts.seed}",
        "",
    ]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    failures = problems + audit.problems + [f"lost: {x}" for x in audit.lost]
    for category, cases in sorted(audit.examples.items()):
        lines += ["", f"{category}, e.g.:"] + [f"  {c}" for c in cases]
    if facts.daemon_log_problems[1]:
        lines += ["", "daemon log warnings/errors, first ones:"]
        lines += [f"  {line}" for line in facts.daemon_log_problems[1]]
    lines += [""]
    if failures:
        lines += [f"FAILED ({len(failures)} problem(s)):"] + [f"  {p}" for p in failures[:50]]
    elif audit.failed:
        lines += ["FAILED: missing accounting rows, or unexplained duplicates or extra rows"]
    else:
        lines += ["PASSED: nothing lost, every outcome accounted, every repeat explained by a kill"]
    return "\n".join(lines)


def _by_channel(audit: Audit) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(audit.accepted.items()))


def _explained(counter: dict[str, int]) -> str:
    total = sum(counter.values())
    if not total:
        return "0"
    parts = ", ".join(f"{n} {why}" for why, n in sorted(counter.items()) if n)
    return f"{total}  ({parts})"
