"""The envelope of a queued message and the state of each of its recipients.

This is the unit the spool persists and the queue manager schedules. Pure data:
no I/O, no clock (times are epoch seconds passed in by callers).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from outrider.message.domains import domain_key


class Source(enum.Enum):
    """Where a message entered Outrider (every source passes :mod:`outrider.intake`)."""

    SMTP = "smtp"
    API = "api"
    DSN = "dsn"
    LIST = "list"  # list or alias expansion


# Envelope.extra key: indexes (comma-separated) of the recipients a local alias forwards
# to a remote address; their envelope sender is rewritten (SRS) when they are sent.
FORWARDED = "forwarded"


class _NoExtra(Mapping[str, str]):
    """The extra metadata of the (many) envelopes that have none: one shared, empty,
    read-only mapping instead of an empty dict per queued message. Set ``extra`` to a
    new mapping to add a key."""

    __slots__ = ()

    def __getitem__(self, key: str) -> NoReturn:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __copy__(self) -> _NoExtra:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _NoExtra:
        return self

    def __repr__(self) -> str:
        return "{}"

    def __hash__(self) -> int:  # immutable, so a valid dataclass default
        return 0


NO_EXTRA: Mapping[str, str] = _NoExtra()


class RcptStatus(enum.Enum):
    PENDING = "pending"  # not final: will be (re)tried
    DELIVERED = "delivered"  # final: accepted by the next hop
    BOUNCED = "bounced"  # final: permanent failure or expired


class Ret(enum.Enum):
    """DSN RET parameter (RFC 3461 4.3)."""

    FULL = "FULL"
    HDRS = "HDRS"


class Notify(enum.Flag):
    """DSN NOTIFY parameter (RFC 3461 4.1). ``NEVER`` is the empty flag."""

    NEVER = 0
    SUCCESS = enum.auto()
    FAILURE = enum.auto()
    DELAY = enum.auto()

    @classmethod
    def default(cls) -> Notify:
        """What applies when the client gave no NOTIFY: failures (and delays) only."""
        return cls.FAILURE | cls.DELAY


@dataclass(slots=True)
class Recipient:
    address: str  # forward-path without angle brackets, e.g. "user@example.org"
    orcpt: str | None = None  # ORCPT as given: "rfc822;user@example.org" (xtext decoded)
    notify: Notify | None = None  # None: client gave no NOTIFY (see Notify.default)
    status: RcptStatus = RcptStatus.PENDING
    attempts: int = 0  # delivery attempts made so far
    next_attempt: float = 0.0  # epoch seconds; 0 means "as soon as possible"
    last_reply: str = ""  # last remote reply or local diagnostic, e.g. "451 4.7.1 try later"
    last_mta: str = ""  # remote host name/IP that produced last_reply
    # Delivered with NOTIFY=SUCCESS to a peer without DSN support: a "relayed" notice is
    # owed (RFC 3461 5.2.2). Persisted, so a crash before the notice goes out keeps it.
    relayed_owed: bool = False

    @property
    def domain(self) -> str:
        """The domain part in its normal form (:mod:`outrider.message.domains`), the key
        mail is routed, queued and given a policy by; empty for a bare local part (e.g.
        ``postmaster``). A name that cannot be a domain is only lower-cased (its MX
        look-up then fails with 5.1.2)."""
        at = self.address.rfind("@")
        return domain_key(self.address[at + 1 :]) if at >= 0 else ""

    @property
    def is_final(self) -> bool:
        return self.status is not RcptStatus.PENDING


@dataclass(slots=True)
class Envelope:
    queue_id: str
    sender: str  # reverse-path without angle brackets; "" is the null sender <>
    recipients: list[Recipient]
    received_at: float  # epoch seconds when the message was accepted (timeQueued)
    size: int = 0  # octets of the stored message (with the Received header)
    ret: Ret | None = None
    envid: str | None = None  # ENVID (xtext decoded)
    smtputf8: bool = False  # client asked for SMTPUTF8
    body_8bit: bool = False  # client declared BODY=8BITMIME (or sent 8-bit octets)
    # Client declared BODY=BINARYMIME: only a next hop offering BINARYMIME and CHUNKING may
    # take it as it is (see smtp.client: the content is checked before it is relabelled).
    body_binary: bool = False
    client_address: str = ""  # peer IP of the submitting client
    helo: str = ""
    job_id: str = ""  # from X-Job (header removed before delivery)
    msg_id: str = ""  # Message-ID header value, if any
    vmta: str = ""  # virtual MTA (or pool) chosen by the intake; "" = not chosen yet
    # Who submitted it, and what it asked for: set by the intake, kept in the spool so a
    # message restored after a reload that removed its virtual MTA can be placed again.
    source: Source = Source.SMTP
    auth_user: str = ""  # SMTP AUTH user; "" = not authenticated
    listener: str = ""  # name of the listener that received it ("host:port")
    vmta_request: str = ""  # X-Virtual-MTA (when the listener honours it) or the API's
    listener_vmta: str = ""  # the listener's default-virtual-mta
    extra: Mapping[str, str] = NO_EXTRA  # forward-compatible metadata (never mutated)

    # Notices: "D" once a delay warning was decided (never twice); ``notices`` holds the
    # kinds owed but not yet stored ("F" failed, "D" delayed, "S" relayed). Both are
    # persisted with the recipient states so a crash neither loses nor repeats a DSN.
    delay_warned: bool = False
    notices: str = ""

    @property
    def pending(self) -> list[Recipient]:
        return [r for r in self.recipients if r.status is RcptStatus.PENDING]

    @property
    def is_done(self) -> bool:
        return all(r.is_final for r in self.recipients)


def forwarded_recipients(env: Envelope) -> frozenset[int]:
    """Indexes of the recipients a local alias forwards (see :data:`FORWARDED`)."""
    value = env.extra.get(FORWARDED, "")
    return frozenset(int(i) for i in value.split(",") if i.isdigit())
