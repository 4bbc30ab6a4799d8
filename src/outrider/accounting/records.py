"""Accounting record types: one row per delivery outcome, PowerMTA-compatible columns.

Column names and the one-letter type codes follow PowerMTA's CSV accounting file so
existing log processors (bounce handlers, billing, dashboards) read Outrider's log as is.
``FIELDS`` is the order rows are built in (new cells are only appended to it); the
file's columns are ``[accounting] fields`` (default ``DEFAULT_FIELDS``: PowerMTA's order),
picked from each row by :func:`projection`.
"""

from __future__ import annotations

import enum
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class RecordType(enum.Enum):
    """The ``type`` column. New kinds (e.g. backoff transitions) are added as members."""

    DELIVERED = "d"
    BOUNCED = "b"
    TRANSIENT = "t"
    # A queue changed mode (backoff/normal) or a source IP was disabled/re-enabled for a
    # destination: dsnAction names the new state, dsnDiag the remote reply, rule the
    # pattern that matched. rcpt/orig are empty.
    QUEUE = "q"
    # A recipient accepted into the queue (one row per recipient of a stored message).
    RECEIVED = "r"
    # A bounce that came back later (a DSN, or a failure reply to a VERP address, consumed
    # at a bounce domain): PowerMTA's remote-bounce record.
    REMOTE_BOUNCE = "rb"
    # A feedback-loop complaint (ARF report): dsnDiag is the feedback type, dsnMta the
    # reporter (User-Agent), dlvSourceIp the Source-IP the report names.
    FEEDBACK = "f"

    @property
    def dsn_action(self) -> str:
        """The RFC 3464 action PowerMTA logs for this kind (it says "relayed" for "d")."""
        return _ACTIONS[self]


_ACTIONS: dict[RecordType, str] = {
    RecordType.DELIVERED: "relayed",
    RecordType.BOUNCED: "failed",
    RecordType.TRANSIENT: "delayed",
    RecordType.QUEUE: "",
    RecordType.RECEIVED: "",
    RecordType.REMOTE_BOUNCE: "failed",
    RecordType.FEEDBACK: "",
}

# ``srcType`` by ``Envelope.source`` value: PowerMTA's "smtp" and "api", and "local" for
# mail Outrider made itself (DSNs, list expansion).
SRC_TYPES: dict[str, str] = {"smtp": "smtp", "api": "api", "dsn": "local", "list": "local"}
# ``dlvType`` of a row whose outcome came from a delivery attempt: every transport today
# is SMTP (PowerMTA writes "smtp" here too; "pipe" etc. would be other transports').
SMTP_DELIVERY = "smtp"

FIELDS: tuple[str, ...] = (
    "type",
    "timeLogged",
    "timeQueued",
    "orig",
    "rcpt",
    "orcpt",
    "dsnAction",
    "dsnStatus",
    "dsnDiag",
    "dsnMta",
    "dlvSourceIp",
    "dlvDestinationIp",
    "queue",
    "vmta",
    "jobId",
    "envId",
    "msgId",
    "size",
    "rule",
    # Appended later: after every older column, never in between.
    "queueId",
    "dlvSize",
    "srcType",
    "dlvType",
    "bounceCat",
    "srcMta",
    "dlvEsmtpAvailable",
    "vmtaPool",
)

# PowerMTA's own columns, in the order of its default accounting file.
POWERMTA_FIELDS: tuple[str, ...] = (
    "type",
    "timeLogged",
    "timeQueued",
    "orig",
    "rcpt",
    "orcpt",
    "dsnAction",
    "dsnStatus",
    "dsnDiag",
    "dsnMta",
    "bounceCat",
    "srcType",
    "srcMta",
    "dlvType",
    "dlvSourceIp",
    "dlvDestinationIp",
    "dlvEsmtpAvailable",
    "dlvSize",
    "vmta",
    "jobId",
    "envId",
    "queue",
    "vmtaPool",
)
# The columns written when ``[accounting] fields`` is not set: PowerMTA's, then Outrider's
# own (the queue id, and the Message-ID, size and rule earlier releases already wrote).
DEFAULT_FIELDS: tuple[str, ...] = (*POWERMTA_FIELDS, "queueId", "msgId", "size", "rule")
assert set(DEFAULT_FIELDS) == set(FIELDS) and len(DEFAULT_FIELDS) == len(FIELDS)


@dataclass(frozen=True, slots=True)
class AccountingRecord:
    """One row. Times are epoch seconds; the writer formats them."""

    type: RecordType
    time_logged: float
    time_queued: float
    # The rest default to empty: q, rb and f rows fill only what they know.
    orig: str = ""  # envelope sender, "" for <>
    rcpt: str = ""
    orcpt: str = ""  # ORCPT as given ("rfc822;user@example.org"), "" if none
    dsn_action: str = ""  # "relayed" | "failed" | "delayed"
    dsn_status: str = ""  # enhanced status, e.g. "2.0.0", "5.1.1"
    dsn_diag: str = ""  # the remote reply or local diagnostic, e.g. "550 5.1.1 no such user"
    dsn_mta: str = ""  # remote MTA host name (or IP) that gave the reply; "" if none
    dlv_source_ip: str = ""
    dlv_destination_ip: str = ""
    queue: str = ""  # the queue the recipient was in, e.g. "example.org" or "example.org/vmta1"
    vmta: str = ""
    job_id: str = ""
    env_id: str = ""
    msg_id: str = ""
    size: int = 0
    rule: str = ""  # for "q" records: the smtp-pattern-list rule that caused the transition
    queue_id: str = ""  # the id given in "250 queued as ..."
    dlv_size: int | None = None  # octets handed to the next hop; None: no delivery attempt
    src_type: str = ""  # "smtp", "api" or "local" (see SRC_TYPES)
    dlv_type: str = ""  # "smtp" when the outcome came from a delivery attempt
    bounce_cat: str = ""  # the bounce category (policy/bounce_category.py)
    src_mta: str = ""  # the submitting client: "HELO (IP)"
    dlv_esmtp: str = ""  # the EHLO keywords the next hop offered, space-separated
    vmta_pool: str = ""  # the pool the virtual MTA was chosen from


_last_time: tuple[int, str] = (-1, "")


def format_time(epoch: float) -> str:
    """PowerMTA's timestamp form: ``2026-11-27 20:31:05+0000`` (UTC, whole seconds).

    Rows come in bursts within the same second: the last second's text is reused."""
    global _last_time
    second = int(epoch)
    if second != _last_time[0]:
        _last_time = (second, time.strftime("%Y-%m-%d %H:%M:%S+0000", time.gmtime(second)))
    return _last_time[1]


def clean(value: str) -> str:
    # NUL cannot be represented in a CSV field that every reader accepts; nothing legitimate
    # puts one in an address or a reply, so it is replaced rather than rejected.
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def to_row(record: AccountingRecord) -> tuple[str, ...]:
    """The record's cells in ``FIELDS`` order, ready for ``csv.writer.writerow``."""
    return (
        record.type.value,
        format_time(record.time_logged),
        format_time(record.time_queued),
        clean(record.orig),
        clean(record.rcpt),
        clean(record.orcpt),
        record.dsn_action,
        record.dsn_status,
        clean(record.dsn_diag),
        clean(record.dsn_mta),
        record.dlv_source_ip,
        record.dlv_destination_ip,
        record.queue,
        record.vmta,
        clean(record.job_id),
        clean(record.env_id),
        clean(record.msg_id),
        str(record.size),
        clean(record.rule),
        record.queue_id,
        "" if record.dlv_size is None else str(record.dlv_size),
        record.src_type,
        record.dlv_type,
        record.bounce_cat,
        clean(record.src_mta),
        record.dlv_esmtp,
        record.vmta_pool,
    )


Projection = Callable[[Sequence[str]], tuple[str, ...]]


def projection(fields: Sequence[str]) -> Projection | None:
    """Picks ``fields`` (names from ``FIELDS``) out of a row built in ``FIELDS`` order;
    None when ``fields`` is ``FIELDS`` itself (nothing to pick). ``KeyError`` for a name
    that is not a column (the configuration rejects those first)."""
    if tuple(fields) == FIELDS:
        return None
    index = {name: i for i, name in enumerate(FIELDS)}
    picks = [index[name] for name in fields]
    if len(picks) == 1:
        only = picks[0]
        return lambda row: (row[only],)
    getter = operator.itemgetter(*picks)

    def pick(row: Sequence[str]) -> tuple[str, ...]:
        return getter(row)  # type: ignore[no-any-return]

    return pick


def src_mta(helo: str, address: str) -> str:
    """``srcMta``: the submitting client as PowerMTA names it, ``HELO (IP)`` (the IP alone
    without a HELO; "" for mail Outrider made itself)."""
    if helo and address:
        return f"{helo} ({address})"
    return helo or address
