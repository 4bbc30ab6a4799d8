"""Setting up the daemon's world: settings, the generated config, TLS, the AUTH user,
and reading back what it left: spool files and accounting rows."""

from __future__ import annotations

import csv
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.daemon import free_port

from soak.clients import Attempt
from soak.daemon import Kill
from soak.sinks import Receipt, Refusal

AUTH_USER = "soak-user"
AUTH_PASSWORD = "soak password 4 the submission listener"


@dataclass(frozen=True)
class Settings:
    minutes: float
    kill_every: float  # seconds between kill -9s
    rate: float  # messages per second, all clients together
    receivers: int  # receiver-processes
    greylist: float  # seconds the deferring sink answers 451 to a new address
    window: float  # seconds before a kill in which a delivery counts as in flight
    drain_timeout: float
    seed: int
    outrider: str
    tmpdir: str
    keep: bool


@dataclass(frozen=True)
class Ports:
    relay: int
    submission: int
    sinks: int  # one port on every sink address (smtp-port)


def pick_ports(sink_hosts: list[str]) -> Ports:
    return Ports(free_port(), free_port(), common_free_port(sink_hosts))


def common_free_port(hosts: list[str]) -> int:
    """A port free on every host, so all sinks can share one ``smtp-port``."""
    for _ in range(50):
        port = free_port(hosts[0])
        ok = True
        for host in hosts[1:]:
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no port free on every sink address")


def config_text(workdir: Path, ports: Ports, dns: str, settings: Settings) -> str:
    """The example config's shape on loopback: relay + submission listeners, uvloop and
    receiver processes as shipped; short retries so deferrals end within the run."""
    return f"""\
[server]
hostname = "mta.soak.test"
postmaster = "postmaster@senders.test"
spool-dir = "{workdir}/spool"
log-dir = "{workdir}/log"
state-dir = "{workdir}/state"
shutdown-timeout = "30s"
receiver-processes = {settings.receivers}
max-delivery-concurrency = 500

[dns]
nameservers = ["{dns}"]
timeout = "5s"

[auth]
users-file = "{workdir}/users"

[[listener]]
address = "127.0.0.1:{ports.relay}"
relay-networks = ["127.0.0.0/8"]

[[listener]]
address = "127.0.0.1:{ports.submission}"
role = "submission"
tls = "starttls"
tls-cert = "{workdir}/tls/cert.pem"
tls-key = "{workdir}/tls/key.pem"
relay-networks = []

[domain."*"]
smtp-port = {ports.sinks}
retry-after = ["5s", "10s", "15s"]
bounce-after = "1h"
max-smtp-out = 20
connect-timeout = "5s"
smtp-greeting-timeout = "30s"
smtp-command-timeout = "30s"
smtp-data-init-timeout = "30s"
smtp-data-block-timeout = "30s"
smtp-data-termination-timeout = "30s"
connection-idle-timeout = "2s"
"""


def prepare(workdir: Path, outrider: str, config: Path) -> None:
    """Self-signed certificate and the AUTH user, with the shipped commands."""
    subprocess.run(
        [
            outrider,
            "gen-cert",
            "--cert",
            str(workdir / "tls" / "cert.pem"),
            "--key",
            str(workdir / "tls" / "key.pem"),
            "--hostname",
            "mta.soak.test",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [outrider, "user", "add", AUTH_USER, "--password-stdin", "-c", str(config)],
        input=AUTH_PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
    )
    check = subprocess.run(
        [outrider, "check-config", "-c", str(config)], capture_output=True, text=True
    )
    if check.returncode != 0:
        raise RuntimeError(f"generated config refused:\n{check.stdout}{check.stderr}")


def spool_files(spool_dir: Path) -> list[str]:
    """Message files (quarantine included) left in the spool; dot files are the daemon's."""
    if not spool_dir.exists():
        return []
    return sorted(
        str(p.relative_to(spool_dir))
        for p in spool_dir.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


def accounting_rows(log_dir: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(log_dir.glob("acct-*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


def dump_evidence(
    workdir: Path,
    attempts: Sequence[Attempt],
    receipts: Sequence[Receipt],
    refusals: Sequence[Refusal],
    kills: Sequence[Kill],
) -> None:
    """CSV files of what the clients, the sinks and the kill loop saw, for a post-mortem
    beside the daemon log, spool and accounting log in the kept work dir."""
    tables: dict[str, tuple[list[str], list[Sequence[object]]]] = {
        "attempts.csv": (
            ["uid", "channel", "kind", "state", "queue_id", "at", "rcpts", "reply"],
            [
                (
                    a.uid,
                    a.channel,
                    a.kind,
                    a.state,
                    a.queue_id,
                    f"{a.at:.3f}",
                    " ".join(a.rcpts),
                    a.reply,
                )
                for a in attempts
            ],
        ),
        "receipts.csv": (
            ["index", "sink", "at", "session", "mail_from", "rcpts", "message_id", "dsn_of"],
            [
                (
                    r.index,
                    r.sink,
                    f"{r.at:.3f}",
                    r.session,
                    r.mail_from,
                    " ".join(r.rcpts),
                    r.message_id,
                    r.dsn.original_uid if r.dsn else "",
                )
                for r in receipts
            ],
        ),
        "refusals.csv": (
            ["sink", "rcpt", "at", "reply"],
            [(r.sink, r.rcpt, f"{r.at:.3f}", r.reply) for r in refusals],
        ),
        "kills.csv": (
            ["at", "pid", "receivers", "orphans", "restart_seconds"],
            [
                (
                    f"{k.at:.3f}",
                    k.pid,
                    " ".join(map(str, k.receivers)),
                    " ".join(map(str, k.orphans)),
                    f"{k.restart_seconds:.2f}",
                )
                for k in kills
            ],
        ),
    }
    for name, (header, rows) in tables.items():
        with open(workdir / name, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
