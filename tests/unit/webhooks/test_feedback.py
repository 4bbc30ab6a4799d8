"""A Feedback event goes through every subscriber without harm; the kinds webhooks send;
the ``[[webhook]]`` config checks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from outrider.accounting.subscriber import AccountingSubscriber
from outrider.accounting.writer import AccountingLog
from outrider.config.loader import ConfigError, parse_config
from outrider.events.bus import EventBus
from outrider.events.types import (
    Bounced,
    Deferred,
    Delivered,
    Feedback,
    MessageDone,
    MessageInfo,
    QueueEvent,
)
from outrider.http import sse
from outrider.http.metrics import LatencyHistogram
from outrider.runtime.event_log import EventLogSubscriber
from outrider.runtime.stats import TrafficCounters
from outrider.webhooks.event_log import EventLogFile
from outrider.webhooks.payload import webhook_kind

INFO = MessageInfo("Q1", "s@x.test", 1.0, "job", "", "", 10)
FEEDBACK = Feedback(5.0, "complained", "r@x.test", "x.test", job_id="job", detail="abuse")
BASE = '[[listener]]\naddress = "127.0.0.1:2525"\n'


def rcpt(cls: type[Delivered], **kw: object) -> Delivered:
    return cls(2.0, INFO, "r@x.test", "", "5.1.1", "550 no", "mx", "q", "v", **kw)  # type: ignore[arg-type]


def test_every_subscriber_takes_a_feedback_event(tmp_path: Path) -> None:
    bus = EventBus()
    log = AccountingLog(tmp_path / "acct")
    traffic = TrafficCounters(lambda: 10.0)
    stream = sse.EventStream(bus.subscribe, bus.unsubscribe)
    client = sse.Client(types=sse.TYPES)
    stream.add(client)
    json_log = EventLogFile(tmp_path / "events.jsonl")
    for sub in (
        AccountingSubscriber(log),
        EventLogSubscriber(logging.getLogger("test.mail"), gather=0),
        traffic,
        LatencyHistogram(),
        json_log,
    ):
        bus.subscribe(sub)
    bus.publish(FEEDBACK)  # no loop: handed over at once; a raise would be logged, so:
    for sub in list(bus._subscribers):
        sub.handle([FEEDBACK])
    log.close()
    json_log.close()
    assert traffic.total == dict.fromkeys(traffic.total, 0)
    [frame, _] = client.take()
    assert b'"type":"complained"' in frame
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["detail"] == "abuse"


def test_webhook_kinds() -> None:
    assert webhook_kind(rcpt(Delivered)) == "delivered"
    assert webhook_kind(rcpt(Bounced)) == "bounced"  # type: ignore[arg-type]
    assert webhook_kind(rcpt(Bounced, expired=True)) == "expired"  # type: ignore[arg-type]
    assert webhook_kind(rcpt(Bounced, category="suppressed")) == "suppressed"  # type: ignore[arg-type]
    assert webhook_kind(rcpt(Deferred)) == "deferred"  # type: ignore[arg-type]
    assert webhook_kind(FEEDBACK) == "complained"
    assert webhook_kind(QueueEvent(1.0, "q", "v", "backoff")) == "backoff"
    assert webhook_kind(QueueEvent(1.0, "q", "v", "normal")) == "backoff-end"
    assert webhook_kind(QueueEvent(1.0, "q", "v", "source-ip-disabled")) is None
    assert webhook_kind(MessageDone(1.0, "Q1")) is None


def test_mail_consumed_by_a_bounce_domain_is_no_delivery_for_webhooks() -> None:
    consumed = Delivered(
        2.0, INFO, "b+t@bounce.x.test", "", "2.0.0", "250", "bounce-domain", "q", "v"
    )
    assert webhook_kind(consumed) is None
    assert sse.event_type(consumed) == "delivered"  # the event log and stream keep it


def test_webhook_config() -> None:
    config = parse_config(
        BASE + '[[webhook]]\nname = "a"\nurl = "https://h.test/x"\nsecret-file = "s"\n'
        'events = ["delivered"]\nheaders = { Authorization = "Bearer x" }\n'
        '[event-log]\nfile = "ev.jsonl"\n'
    )
    [hook] = config.webhooks
    assert hook.events == ("delivered",) and hook.batch_size == 100 and hook.timeout == 10
    assert hook.headers == (("Authorization", "Bearer x"),)
    assert config.event_log.file is not None and config.event_log.file.name == "ev.jsonl"
    assert parse_config(BASE).webhooks == () and parse_config(BASE).event_log.file is None
    bad = (
        BASE + '[[webhook]]\nname = "a"\nurl = "ftp://h"\nsecret-file = "s"\n'
        '[[webhook]]\nname = "a"\nurl = "http://h"\nsecret-file = "s"\nevents = ["nope"]\n'
        'headers = { "X-Outrider-Batch" = "1" }\n'
    )
    with pytest.raises(ConfigError) as info:
        parse_config(bad, "t.toml")
    text = str(info.value)
    assert "webhook[0].url" in text and "http:// or https://" in text
    assert "webhook[1].events[0]" in text
    assert "set by outrider itself" in text and "duplicate webhook name" in text
