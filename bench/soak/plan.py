"""What the soak sends and what must become of it: domains, addresses, message mix.

Every recipient address is unique to its message (the message's uid is in the local
part), so one address names one (message, recipient) pair at the sinks, in the DSNs and
in the accounting log alike. The envelope sender is unique too, so a DSN's recipient
names the message it reports on.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import Literal

Outcome = Literal["delivered", "bounced"]

# Sink roles and the loopback address each listens on (all on one port).
SINK_HOSTS = {"ok": "127.0.0.2", "bounce": "127.0.0.3", "defer": "127.0.0.4", "dsn": "127.0.0.5"}
OK_DOMAIN = "ok.test"  # accepts everything
BOUNCE_DOMAIN = "bounce.test"  # 550 5.1.1 for local parts starting with "hard-"
DEFER_DOMAIN = "defer.test"  # 451 4.7.1 for a while (greylisting), then accepts
SENDER_DOMAIN = "senders.test"  # the envelope senders' domain: DSNs are delivered here
HARD_PREFIX = "hard-"
MESSAGE_ID_DOMAIN = "client.soak.test"
_UID_IN_ID = re.compile(r"soak\.([0-9A-Za-z]+)@" + re.escape(MESSAGE_ID_DOMAIN))

# Message kinds: (name, weight, recipient builders). Each builder maps a uid to an address.
KINDS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("ok", 45, ("ok",)),
    ("bounce", 15, ("hard",)),
    ("defer", 15, ("defer",)),
    ("accepted-at-bounce-host", 10, ("soft",)),
    ("mixed", 15, ("ok", "hard", "defer")),
)


def dns_records() -> dict[str, dict[str, list[object]]]:
    """The loopback zone: one MX per test domain, each pointing at its sink's address."""
    records: dict[str, dict[str, list[object]]] = {}
    for domain, role in (
        (OK_DOMAIN, "ok"),
        (BOUNCE_DOMAIN, "bounce"),
        (DEFER_DOMAIN, "defer"),
        (SENDER_DOMAIN, "dsn"),
    ):
        records[domain] = {"MX": [(10, f"mx.{domain}")]}
        records[f"mx.{domain}"] = {"A": [SINK_HOSTS[role]]}
    return records


def sender_of(uid: str) -> str:
    return f"{uid}@{SENDER_DOMAIN}"


def uid_of_sender(address: str) -> str | None:
    local, _, domain = address.rpartition("@")
    return local if domain.lower() == SENDER_DOMAIN else None


def message_id_of(uid: str) -> str:
    return f"<soak.{uid}@{MESSAGE_ID_DOMAIN}>"


def uid_in(text: str) -> str | None:
    """The uid of the first soak Message-ID in ``text`` (a header value or a DSN body)."""
    found = _UID_IN_ID.search(text)
    return found.group(1) if found else None


def recipient(kind: str, uid: str) -> str:
    if kind == "ok":
        return f"{uid}@{OK_DOMAIN}"
    if kind == "hard":
        return f"{HARD_PREFIX}{uid}@{BOUNCE_DOMAIN}"
    if kind == "soft":
        return f"{uid}@{BOUNCE_DOMAIN}"
    if kind == "defer":
        return f"{uid}@{DEFER_DOMAIN}"
    raise ValueError(f"unknown recipient kind {kind!r}")


def expected_outcome(rcpt: str) -> Outcome:
    """Only hard-bouncing addresses bounce: deferrals end in delivery within the run."""
    return "bounced" if rcpt.lower().startswith(HARD_PREFIX) else "delivered"


def is_deferred_domain(rcpt: str) -> bool:
    return rcpt.lower().endswith("@" + DEFER_DOMAIN)


@dataclass(frozen=True)
class PlannedMessage:
    uid: str
    kind: str
    sender: str
    rcpts: tuple[str, ...]
    content: bytes


def plan_message(uid: str, rng: random.Random) -> PlannedMessage:
    """One message of a random kind with a body of random size (0.5 to 8 KiB)."""
    names = [k[0] for k in KINDS]
    weights = [k[1] for k in KINDS]
    kind = rng.choices(names, weights)[0]
    builders = next(k[2] for k in KINDS if k[0] == kind)
    rcpts = tuple(recipient(b, uid) for b in builders)
    sender = sender_of(uid)
    head = (
        f"From: <{sender}>\r\n"
        f"To: {', '.join(f'<{r}>' for r in rcpts)}\r\n"
        f"Subject: soak {uid} ({kind})\r\n"
        f"Date: {formatdate(time.time())}\r\n"
        f"Message-ID: {message_id_of(uid)}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    lines = rng.randint(8, 120)
    body = "".join(
        f"soak {uid} line {i:04d}: the quick brown fox jumps over\r\n" for i in range(lines)
    )
    return PlannedMessage(uid, kind, sender, rcpts, (head + body).encode("ascii"))
