"""Human output of the console: aligned tables and short key/value blocks.

Pure functions from the JSON replies to text, so ``--json`` and the tables always
show the same data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

Columns = Sequence[tuple[str, str]]  # (key in the JSON object, column header)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Columns, *, empty: str = "(none)") -> str:
    """Left-aligned text columns, numbers right-aligned; ``empty`` when there are no rows."""
    if not rows:
        return empty
    cells = [[cell(row.get(key)) for key, _ in columns] for row in rows]
    numeric = [
        all(isinstance(row.get(key), int) and not isinstance(row.get(key), bool) for row in rows)
        for key, _ in columns
    ]
    widths = [
        max(len(header), *(len(line[i]) for line in cells)) for i, (_, header) in enumerate(columns)
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if numeric[i] else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line([h for _, h in columns]), *(line(c) for c in cells)])


def size(octets: int | None) -> str:
    if octets is None:
        return "-"
    value = float(octets)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{octets} B"


def duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


QUEUE_COLUMNS: Columns = (
    ("queue", "QUEUE"),
    ("recipients", "RCPTS"),
    ("messages", "MSGS"),
    ("size", "SIZE"),
    ("age", "OLDEST"),
    ("connections", "CONNS"),
    ("mode", "MODE"),
    ("next_attempt", "NEXT ATTEMPT"),
    ("last_error", "LAST ERROR"),
)


def queues(views: Sequence[dict[str, Any]]) -> str:
    rows = [
        {
            **v,
            "size": size(v["bytes"]),
            "age": duration(v["oldest_age"]),
            "mode": v["mode"] + (f" ({v['reason']})" if v.get("reason") else ""),
        }
        for v in views
    ]
    return table(rows, QUEUE_COLUMNS, empty="no queued mail")


def topdomains(views: Sequence[dict[str, Any]]) -> str:
    rows = [{**v, "size": size(v["bytes"]), "age": duration(v["oldest_age"])} for v in views]
    columns: Columns = (
        ("domain", "DOMAIN"),
        ("recipients", "RCPTS"),
        ("messages", "MSGS"),
        ("size", "SIZE"),
        ("age", "OLDEST"),
    )
    return table(rows, columns, empty="no queued mail")


def vmtas(views: Sequence[dict[str, Any]]) -> str:
    columns: Columns = (
        ("vmta", "VIRTUAL MTA"),
        ("source_ip", "SOURCE IP"),
        ("disabled", "DISABLED"),
        ("queues", "QUEUES"),
        ("recipients", "RCPTS"),
        ("messages", "MSGS"),
        ("connections", "CONNS"),
        ("backoff_queues", "IN BACKOFF"),
    )
    return table(views, columns)


def jobs(views: Sequence[dict[str, Any]]) -> str:
    columns: Columns = (
        ("job", "JOB"),
        ("recipients", "RCPTS"),
        ("messages", "MSGS"),
        ("paused", "PAUSED"),
    )
    return table(views, columns, empty="no jobs")


def recipients(rows: Sequence[dict[str, Any]], total: int) -> str:
    columns: Columns = (
        ("id", "ID"),
        ("sender", "SENDER"),
        ("rcpt", "RECIPIENT"),
        ("queue", "QUEUE"),
        ("job", "JOB"),
        ("state", "STATE"),
        ("attempts", "TRIES"),
        ("next_attempt", "NEXT ATTEMPT"),
        ("last_error", "LAST ERROR"),
    )
    text = table(rows, columns, empty="no queued recipients")
    if total > len(rows):
        text += f"\n({len(rows)} of {total} shown)"
    return text


def _delivery_line(delivery: dict[str, str] | None) -> str:
    if not delivery or delivery["mode"] == "immediate":
        return "delivery: on arrival"
    return f"delivery: {delivery['mode']} ({delivery['reason']})"


def _cluster_line(cluster: dict[str, Any] | None) -> list[str]:
    """``[cluster] redis`` only: shared limits, or the fallback while Redis is away."""
    if cluster is None:
        return []
    nodes = cluster["live_nodes"]
    if cluster["redis_up"]:
        state = f"shared limits, {nodes} live node(s)"
    else:
        why = f": {cluster['last_error']}" if cluster.get("last_error") else ""
        state = f"FALLBACK (Redis unreachable{why}), local limits / {nodes} node(s)"
    return [f"cluster: node {cluster['node']}, {state}, {cluster.get('leases', 0)} lease(s) held"]


def cluster(c: dict[str, Any]) -> str:
    """``show cluster``: the live nodes, then per queue the leases each node holds, the
    rate each reports, the GCRA's booking ahead and the shared mode; then per
    (destination, source address) the leases each node holds."""
    state = "shared limits" if c.get("redis_up") else "FALLBACK (Redis unreachable)"
    head = f"node {c['node']}: {state}, {len(c.get('nodes', []))} live node(s)"
    nodes = [
        {**n, "node": n["node"] + (" (this node)" if n.get("self") else ""), "age": n.get("age")}
        for n in c.get("nodes", [])
    ]
    node_table = table(nodes, (("node", "NODE"), ("age", "HEARTBEAT AGE (s)")))
    rows = [
        {
            "queue": q["queue"],
            "leases": q.get("leases_total", 0),
            "by_node": " ".join(f"{n}={k}" for n, k in sorted(q.get("leases", {}).items())) or "-",
            "rate": f"{q.get('rate', 0.0):.1f}/s",
            "ahead": f"{q.get('booked_ahead', 0.0):.2f}s",
            "mode": q.get("mode", "normal") + (" paused" if q.get("paused") else ""),
        }
        for q in c.get("queues", [])
    ]
    columns: Columns = (
        ("queue", "QUEUE"),
        ("leases", "LEASES"),
        ("by_node", "BY NODE"),
        ("rate", "RATE"),
        ("ahead", "BOOKED AHEAD"),
        ("mode", "MODE"),
    )
    queue_table = table(rows, columns, empty="no shared limits in use")
    parts = [head, node_table, queue_table]
    addresses = [
        {
            "address": a["address"],
            "leases": a.get("leases_total", 0),
            "by_node": " ".join(f"{n}={k}" for n, k in sorted(a.get("leases", {}).items())) or "-",
        }
        for a in c.get("addresses", [])
    ]
    if addresses:
        address_columns: Columns = (
            ("address", "DESTINATION/SOURCE IP"),
            ("leases", "LEASES"),
            ("by_node", "BY NODE"),
        )
        parts.append(table(addresses, address_columns))
    return "\n\n".join(parts)


def status(s: dict[str, Any]) -> str:
    traffic = s["traffic"]
    spool = s["spool"]
    conns = s["connections"]
    lines = [
        f"outrider {s['version']}, up {duration(s['uptime'])} (since {s['started']})",
        f"connections: {cell(conns['in'])} in, {conns['out']} out",
        _delivery_line(s.get("delivery")),
        f"spool: {spool['messages']} messages, {size(spool['bytes'])}, "
        f"{size(spool['free_bytes'])} free ({spool['path']})",
        *_cluster_line(s.get("cluster")),
        "",
    ]
    rows = [{"period": period, **traffic[key]} for period, key in PERIODS]
    columns: Columns = (
        ("period", ""),
        ("received", "RECEIVED"),
        ("delivered", "DELIVERED"),
        ("bounced", "BOUNCED"),
        ("deferred", "DEFERRED"),
    )
    return "\n".join(lines) + table(rows, columns)


PERIODS = (("last minute", "last_minute"), ("last hour", "last_hour"), ("since start", "total"))


def message(m: dict[str, Any]) -> str:
    fields = (
        ("id", "id"),
        ("sender", "sender"),
        ("size", "size"),
        ("received", "received"),
        ("job", "job"),
        ("vmta", "virtual MTA"),
        ("message_id", "message-id"),
        ("client_address", "client"),
        ("held", "held"),
    )
    lines = [f"{label}: {cell(m.get(key)) if m.get(key) != '' else '-'}" for key, label in fields]
    columns: Columns = (
        ("rcpt", "RECIPIENT"),
        ("state", "STATE"),
        ("attempts", "TRIES"),
        ("next_attempt", "NEXT ATTEMPT"),
        ("last_error", "LAST ERROR"),
    )
    content = m.get("body", m.get("headers", ""))
    tail = "\n(truncated)" if m.get("truncated") else ""
    return "\n".join([*lines, "", table(m["recipients"], columns), "", content.rstrip()]) + tail


def local_route(r: dict[str, Any]) -> str:
    local = r["local"]
    lines = [f"address: {r['address']}", f"local: {local['kind']} {local['address']}"]
    if "refused" in local:
        return "\n".join([*lines, f"refused: {local['refused']}"])
    if local.get("transport"):
        lines.append(f"transport: {local['transport']}")
    if local.get("maildir"):
        lines.append(f"maildir: {local['maildir']}")
    for key, label in (
        ("mailboxes", "mailboxes"),
        ("forwarded", "forwarded to"),
        ("lists", "lists"),
    ):
        if local.get(key):
            lines.append(f"{label}: {', '.join(local[key])}")
    if local.get("members"):
        lines.append(f"members: {', '.join(local['members'])}")
    if local.get("loop"):
        lines.append(f"loop at: {local['loop']} (refused with 550 5.4.6)")
    return "\n".join(lines)


def route(r: dict[str, Any]) -> str:
    if r.get("delivery") == "local":
        return local_route(r)
    lines = [f"address: {r['address']}"]
    if r.get("postmaster_mapped_to"):
        lines.append(f"postmaster: delivered to {r['postmaster_mapped_to']}")
    relay = (
        "a relay domain (accepted from anyone)"
        if r["relay_domain"]
        else "relayed for trusted clients only"
    )
    lines += [
        f"domain: {r['domain']}, {relay}",
        f"delivery: {r['delivery']} (virtual MTA {r['vmta']})",
        f"queue: {', '.join(r['queues']) or '-'}",
    ]
    if r.get("error"):
        lines.append(f"error: {r['error']}")
    hosts = [{**h, "addresses": " ".join(h["addresses"])} for h in r["hosts"]]
    host_columns: Columns = (
        ("preference", "PREF"),
        ("host", "HOST"),
        ("port", "PORT"),
        ("addresses", "ADDRESSES"),
    )
    tls = r["tls"]
    sts = f", MTA-STS MX {' '.join(tls['mta_sts_mx'])}" if tls["mta_sts_mx"] else ""
    lines += ["", table(hosts, host_columns, empty="no hosts"), ""]
    lines.append(f"tls: {tls['mode']}, verify {tls['verify']} (from {tls['source']}){sts}")
    policy = [
        {"key": k, "value": cell(v["value"]), "from": v["from"]} for k, v in r["policy"].items()
    ]
    lines += ["", table(policy, (("key", "POLICY"), ("value", "VALUE"), ("from", "FROM")))]
    return "\n".join(lines)


def toml_value(value: Any) -> str:
    """A config value in TOML syntax (inline tables for rules)."""
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + inner + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _toml_table(header: str, keys: dict[str, Any]) -> list[str]:
    lines = [header]
    for key, value in keys.items():
        if value is None:
            lines.append(f"# {key}: not set")
        else:
            lines.append(f"{key} = {toml_value(value)}")
    return [*lines, ""]


def config(tables_: dict[str, Any], source: str | None) -> str:
    """``show config``: the running configuration as TOML tables (durations in seconds,
    sizes in octets)."""
    lines = [f"# running configuration, loaded from {source or '(no file)'}", ""]
    for name, keys in tables_.items():
        if name == "listener":
            for listener in keys:
                lines += _toml_table("[[listener]]", listener)
        else:
            lines += _toml_table(f"[{name}]", keys)
    return "\n".join(lines).rstrip()
