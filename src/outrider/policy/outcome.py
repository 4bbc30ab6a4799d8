"""Classify a delivery reply into an outcome with a scope.

Scope follows Postfix's smtp_trouble.c: only site-level trouble (cannot connect,
greeting refused, connection lost) says anything about the destination as a whole;
a 550 for one mailbox does not.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from outrider.smtp.replies import Reply


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


class Scope(enum.Enum):
    """How far a failure reaches: one recipient, the message, every recipient of one
    domain (DNS says it has no mail server), or the destination as a whole (cannot
    connect: every message queued for it waits)."""

    RECIPIENT = "recipient"
    MESSAGE = "message"
    DOMAIN = "domain"
    SITE = "site"


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    scope: Scope
    status: str  # enhanced status code to report, e.g. "5.1.1"
    diagnostic: str  # reply text as logged and put in DSNs
    remote_mta: str = ""  # remote host that answered ("" for local decisions)


_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b", re.ASCII)


def verdict_of(code: int) -> Verdict:
    if 200 <= code < 300:
        return Verdict.DELIVERED
    if 400 <= code < 500:
        return Verdict.TRANSIENT
    return Verdict.PERMANENT


def status_of(reply: Reply) -> str:
    """The enhanced status code of a reply, or one derived from its basic code (RFC 3463)."""
    if reply.enhanced and reply.enhanced[0] == str(reply.code)[0]:
        return reply.enhanced
    first = str(reply.code)[0]
    return {"2": "2.0.0", "4": "4.0.0", "5": "5.0.0"}.get(first, "4.0.0")


# RFC 3463 X.4.7 "Delivery time expired", in its class 4: "persistent transient failure
# ... persistence of some temporary condition has caused abandonment ... of attempts to
# send the message" (and X.4.7 "is useful only as a persistent transient error").
EXPIRED_STATUS = "4.4.7"


def expired_status(status: str) -> str:
    """The status reported for a recipient given up on: one whose last reply was
    temporary (``4.2.2`` mailbox full, ``4.4.1`` no answer) expired in the queue and is
    reported ``4.4.7`` with ``Action: failed``; the last reply stays in the diagnostic.
    A permanent status is kept."""
    return EXPIRED_STATUS if status.startswith("4.") else status


def status_from_text(text: str, default: str) -> str:
    """Find an enhanced status code in a stored diagnostic such as ``"550 5.1.1 no such user"``."""
    match = _STATUS_RE.search(text)
    return match.group(0) if match else default


def classify_reply(reply: Reply, *, scope: Scope, remote_mta: str = "") -> Outcome:
    return Outcome(
        verdict=verdict_of(reply.code),
        scope=scope,
        status=status_of(reply),
        diagnostic=str(reply),
        remote_mta=remote_mta,
    )


def local_outcome(code: int, status: str, text: str, *, scope: Scope = Scope.SITE) -> Outcome:
    """An outcome decided locally (DNS failure, no route) rather than by a remote reply."""
    return Outcome(
        verdict=verdict_of(code), scope=scope, status=status, diagnostic=f"{code} {status} {text}"
    )
