"""What a webhook (and the event log) says about an event: the event stream's JSON, extended.

:func:`outrider.http.sse.event_json` is the one serialisation of events; this adds the
kinds webhooks distinguish (an expired or suppressed bounce, the start and end of a
back-off) and the fields a campaign tool needs to match an event to what it sent (the
job id, the sender, the original recipient, the unix ``timestamp``).
"""

from __future__ import annotations

from typing import Any

from outrider.events.types import (
    Bounced,
    Deferred,
    Delivered,
    Event,
    Feedback,
    QueueEvent,
    RecipientEvent,
    RemoteBounce,
)
from outrider.feedback.transport import HOST as CONSUMED
from outrider.http.sse import event_json, event_type

SUPPRESSED = "suppressed"  # the bounce category of a recipient on a suppression list


def webhook_kind(event: Event) -> str | None:
    """The webhook kind of ``event``; None for the events webhooks are not sent."""
    cls = type(event)
    if cls is Delivered:
        assert isinstance(event, Delivered)
        # mail consumed by a bounce domain is reported by what it held (async bounces,
        # complaints, unsubscribes), not as a delivery the sender never made
        return None if event.remote_mta == CONSUMED else "delivered"
    if cls is Bounced:
        assert isinstance(event, Bounced)
        if event.category == SUPPRESSED:
            return "suppressed"
        return "expired" if event.expired else "bounced"
    if cls is Deferred:
        return "deferred"
    if cls is RemoteBounce:
        return "bounced"  # an asynchronous one: its JSON has "async": true
    if cls is Feedback:
        assert isinstance(event, Feedback)
        return event.kind if event.kind in ("complained", "unsubscribed") else None
    if cls is QueueEvent:
        assert isinstance(event, QueueEvent)
        if event.action == "backoff":
            return "backoff"
        if event.action == "normal":
            return "backoff-end"
    return None


def log_kind(event: Event) -> str | None:
    """The event log's kind: the webhook kind, else the event stream's type."""
    return webhook_kind(event) or event_type(event)


def event_record(event: Event, kind: str) -> dict[str, Any]:
    """The JSON object for ``event`` sent as ``kind``."""
    out = event_json(event) or {}
    out["type"] = kind
    out["timestamp"] = round(event.at, 3)
    if isinstance(event, RecipientEvent):
        msg = event.message
        out |= {
            "sender": msg.sender,
            "orcpt": event.orcpt,
            "job_id": msg.job_id,
            "envid": msg.envid,
            "msg_id": msg.msg_id,
            "remote_mta": event.remote_mta,
            "source_ip": event.source_ip,
            "destination_ip": event.destination_ip,
        }
    elif isinstance(event, QueueEvent):
        out |= {"host": event.host, "rule": event.rule}
    elif isinstance(event, RemoteBounce):
        out |= {
            "sender": event.sender,
            "orcpt": event.orcpt,
            "job_id": event.job_id,
            "msg_id": event.msg_id,
            "remote_mta": event.remote_mta,
        }
    elif isinstance(event, Feedback) and event.sender:
        out |= {"sender": event.sender, "reporter": event.reporter, "msg_id": event.msg_id}
    return out
