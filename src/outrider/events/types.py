"""The events the scheduler publishes.

Facts, not commands: a subscriber (the accounting log, the DSN notifier, later metrics,
webhooks and the web monitor) learns what happened and never changes the outcome. One
event object is shared by every subscriber, so subscribers must treat it as read-only;
the per-recipient kinds are plain slotted dataclasses rather than frozen ones because
they are built on the delivery path for every recipient, and a frozen dataclass's
``__init__`` costs about twice as much.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from outrider.message.envelope import Recipient


@dataclass(slots=True)
class MessageInfo:
    """What every per-recipient event says about its message."""

    queue_id: str
    sender: str
    received_at: float
    job_id: str
    envid: str
    msg_id: str
    size: int
    source: str = "smtp"  # Envelope.source's value: "smtp", "api", "dsn" or "list"
    src_mta: str = ""  # the submitting client, "HELO (IP)"; "" for mail made here


@dataclass(slots=True)
class RecipientEvent:
    """One delivery attempt's result for one recipient."""

    at: float
    message: MessageInfo
    recipient: str
    orcpt: str
    status: str  # enhanced status code, e.g. "5.1.1"
    diagnostic: str  # the reply as logged and put in DSNs
    remote_mta: str
    queue: str  # the delivery queue's name ("destination/vmta"), or the domain
    vmta: str
    source_ip: str = ""
    destination_ip: str = ""
    category: str = ""  # bounce category (PowerMTA's names); "" for a delivery
    esmtp: str = ""  # the EHLO keywords the next hop offered, space-separated
    pool: str = ""  # the virtual-MTA pool ``vmta`` was chosen from; "" if none


@dataclass(slots=True)
class Delivered(RecipientEvent):
    pass


@dataclass(slots=True)
class Deferred(RecipientEvent):
    next_attempt: float = 0.0


@dataclass(slots=True)
class Bounced(RecipientEvent):
    expired: bool = False  # retried until bounce-after, rather than refused outright


@dataclass(slots=True)
class MessageQueued:
    """A message was stored and scheduled (not a restored one: it was announced before)."""

    at: float
    message: MessageInfo
    recipients: int
    vmta: str
    # The envelope's own recipient list (not a copy: the event is built for every message
    # received). Subscribers read only the address and ORCPT, which never change.
    rcpts: Sequence[Recipient] = ()
    pool: str = ""  # ``vmta`` when it names a virtual-MTA pool


@dataclass(frozen=True, slots=True)
class MessageDone:
    """Every recipient is final and every notice owed was stored: the message left the spool."""

    at: float
    queue_id: str


@dataclass(frozen=True, slots=True)
class QueueEvent:
    """A change in how a delivery queue or destination is shaped."""

    at: float
    queue: str
    vmta: str
    action: str  # "backoff", "normal", "source-ip-disabled", "source-ip-enabled"
    reply: str = ""
    host: str = ""
    rule: str = ""


@dataclass(frozen=True, slots=True)
class NoticeDue:
    """A delivery status notification is owed for ``queue_id`` (kind: F, D or S).

    The scheduler has recorded the intent in the spool before publishing this, so a
    crash cannot lose it; the notifier builds and stores the DSN, then tells the
    scheduler, which clears the intent.
    """

    at: float
    queue_id: str
    kind: str


@dataclass(frozen=True, slots=True)
class Feedback:
    """A recipient complained (ARF report) or unsubscribed (one-click or mailto)."""

    at: float
    kind: str  # "complained" or "unsubscribed"
    recipient: str
    sender_domain: str
    job_id: str = ""
    queue_id: str = ""
    detail: str = ""  # e.g. the feedback type, the user agent, the list
    # Filled for complaints (ARF reports to a bounce domain): the original envelope
    # sender, who reported (User-Agent) and the IP the original left from (Source-IP).
    sender: str = ""
    reporter: str = ""
    source_ip: str = ""
    msg_id: str = ""


@dataclass(frozen=True, slots=True)
class RemoteBounce:
    """A bounce that came back after the next hop had accepted the message: a DSN (or,
    to a VERP address, any failure reply) consumed at a bounce domain. Not a
    :class:`RecipientEvent`: no delivery attempt of ours is behind it, so the traffic
    counters, the DSN notifier and the bounce auto-add (which checks ``type is Bounced``)
    leave it alone; accounting writes it as ``rb``, webhooks send it as ``bounced``
    with ``"async": true``."""

    at: float
    recipient: str
    sender: str  # the original envelope sender (the VERP base address)
    status: str  # enhanced status code from the DSN (or the text), e.g. "5.1.1"
    diagnostic: str  # Diagnostic-Code, or the reply text found
    remote_mta: str  # Remote-MTA, else Reporting-MTA
    category: str  # bounce category
    action: str = "failed"
    orcpt: str = ""  # Original-Recipient as given ("rfc822;ann@example.org")
    job_id: str = ""
    queue_id: str = ""
    msg_id: str = ""
    verp: bool = False  # the recipient came from a VERP token


# Delivered, Deferred and Bounced are the RecipientEvent kinds.
Event = (
    RecipientEvent | MessageQueued | MessageDone | QueueEvent | NoticeDue | Feedback | RemoteBounce
)
