"""Server-sent events: framing, the type filter, bounded clients, subscribe on demand."""

from __future__ import annotations

import json

import pytest

from outrider.events.bus import EventBus
from outrider.events.types import (
    Bounced,
    Deferred,
    Delivered,
    Feedback,
    MessageDone,
    MessageInfo,
    MessageQueued,
    NoticeDue,
    QueueEvent,
)
from outrider.http import sse

INFO = MessageInfo("Q1", "s@x.test", 1.0, "", "", "", 10)


def rcpt(cls: type[Delivered] | type[Bounced] | type[Deferred], at: float = 2.0) -> Delivered:
    return cls(at, INFO, "r@x.test", "", "2.0.0", "250 ok\nsecond", "mx", "x.test/default", "v")  # type: ignore[return-value]


def decode(payload: bytes) -> dict[str, object]:
    text = payload.decode()
    assert text.endswith("\n\n") and text.count("\n") == 2
    assert text.startswith("data: ")
    return dict(json.loads(text[len("data: ") :]))


def test_frames_are_one_data_line_even_for_multiline_replies() -> None:
    data = sse.event_json(rcpt(Delivered))
    assert data is not None
    decoded = decode(sse.frame(data))
    assert decoded["type"] == "delivered" and decoded["id"] == "Q1"
    assert decoded["diagnostic"] == "250 ok\nsecond" and decoded["queue"] == "x.test/default"
    assert sse.frame({"a": 1}, "dropped").startswith(b"event: dropped\ndata: ")


def test_every_event_kind_has_a_type() -> None:
    kinds = [
        sse.event_json(e)
        for e in (
            MessageQueued(1.0, INFO, 2, "v"),
            rcpt(Delivered),
            rcpt(Bounced),
            rcpt(Deferred),
            QueueEvent(1.0, "q", "v", "backoff", reply="421 slow"),
            MessageDone(1.0, "Q1"),
            Feedback(1.0, "complained", "r@x.test", "x.test"),
            Feedback(1.0, "unsubscribed", "r@x.test", "x.test", detail="list"),
        )
    ]
    assert [k["type"] for k in kinds if k] == list(sse.TYPES)
    assert sse.event_json(NoticeDue(1.0, "Q1", "F")) is None


def test_types_filter() -> None:
    assert sse.parse_types("") == frozenset(sse.TYPES)
    assert sse.parse_types("delivered, bounced") == {"delivered", "bounced"}
    with pytest.raises(ValueError, match="'nope'"):
        sse.parse_types("delivered,nope")


def test_subscribes_only_while_a_client_is_connected() -> None:
    bus = EventBus()
    stream = sse.EventStream(bus.subscribe, bus.unsubscribe)
    assert stream not in bus._subscribers
    client = sse.Client(frozenset({"bounced"}))
    stream.add(client)
    assert stream in bus._subscribers
    stream.handle([rcpt(Delivered), rcpt(Bounced)])
    frames = client.take()
    assert [decode(f)["type"] for f in frames] == ["bounced"]
    stream.remove(client)
    assert stream not in bus._subscribers


def test_a_slow_client_is_dropped_not_waited_for() -> None:
    bus = EventBus()
    stream = sse.EventStream(bus.subscribe, bus.unsubscribe)
    slow = sse.Client(frozenset(sse.TYPES), limit=3)
    fast = sse.Client(frozenset(sse.TYPES), limit=100)
    stream.add(slow)
    stream.add(fast)
    stream.handle([rcpt(Delivered, at=float(i)) for i in range(5)])
    assert slow.dropped and slow.wakeup.is_set() and slow not in stream.clients
    assert len(fast.take()) == 5 and fast in stream.clients


def test_bounces_and_deferrals_carry_their_category() -> None:
    bounced = rcpt(Bounced)
    bounced.category = "bad-mailbox"
    data = sse.event_json(bounced)
    assert data is not None and data["category"] == "bad-mailbox"
    delivered = sse.event_json(rcpt(Delivered))
    assert delivered is not None and delivered["category"] == ""
