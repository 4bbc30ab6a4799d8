"""The daemon log's mail lines: one INFO line per message received and per recipient
delivered or bounced, keyed by the queue id."""

from __future__ import annotations

import logging

import pytest

from outrider.events.types import (
    Bounced,
    Deferred,
    Delivered,
    Event,
    MessageDone,
    MessageInfo,
    MessageQueued,
    QueueEvent,
    RecipientEvent,
)
from outrider.runtime.event_log import EventLogSubscriber

INFO = MessageInfo("Q1", "a@example.com", 0.0, "", "", "<m@x>", 321)


def recipient(kind: type[RecipientEvent], **kw: object) -> RecipientEvent:
    fields: dict[str, object] = {
        "at": 1.0,
        "message": INFO,
        "recipient": "b@example.org",
        "orcpt": "",
        "status": "2.0.0",
        "diagnostic": "250 2.0.0 ok",
        "remote_mta": "mx.example.org",
        "queue": "example.org/default",
        "vmta": "default",
        "destination_ip": "192.0.2.1",
    }
    fields.update(kw)
    return kind(**fields)  # type: ignore[arg-type]


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """One line per event (a batch is one record, one line per event)."""
    return [
        line
        for r in caplog.records
        if r.name == "outrider.mail"
        for line in r.getMessage().split("\n")
    ]


def test_one_line_per_received_delivered_and_bounced(caplog: pytest.LogCaptureFixture) -> None:
    events: list[Event] = [
        MessageQueued(0.0, INFO, 3, "default"),
        recipient(Delivered),
        recipient(Deferred, status="4.2.0", diagnostic="451 later"),
        recipient(Bounced, recipient="c@example.org", status="5.1.1", diagnostic="550 5.1.1 no"),
        recipient(
            Bounced, recipient="d@example.org", status="4.4.7", diagnostic="451 (expired)",
            expired=True, remote_mta="", destination_ip="",
        ),
        MessageDone(2.0, "Q1"),
        QueueEvent(2.0, "example.org", "default", "backoff"),
    ]  # fmt: skip
    with caplog.at_level(logging.INFO, "outrider.mail"):
        EventLogSubscriber().handle(events)
    assert lines(caplog) == [
        "Q1: received from=<a@example.com> size=321 nrcpt=3 vmta=default",
        "Q1: delivered to=<b@example.org> relay=mx.example.org [192.0.2.1] status=2.0.0 "
        "(250 2.0.0 ok)",
        "Q1: bounced to=<c@example.org> relay=mx.example.org [192.0.2.1] status=5.1.1 "
        "(550 5.1.1 no)",
        "Q1: bounced (expired) to=<d@example.org> relay=none status=4.4.7 (451 (expired))",
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records)


def test_a_multi_line_reply_stays_on_one_line(caplog: pytest.LogCaptureFixture) -> None:
    event = recipient(Bounced, status="5.7.1", diagnostic="550-5.7.1 first\n550 5.7.1 sec\x1bond")
    with caplog.at_level(logging.INFO, "outrider.mail"):
        EventLogSubscriber().handle([event])
    (line,) = lines(caplog)
    assert line.endswith("(550-5.7.1 first / 550 5.7.1 sec\\x1bond)")


def test_nothing_is_formatted_when_info_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("test.event_log.quiet")
    logger.setLevel(logging.WARNING)
    calls: list[object] = []
    monkeypatch.setattr(logger, "info", lambda *a: calls.append(a))
    EventLogSubscriber(logger).handle([recipient(Delivered)])
    assert calls == []


def test_the_daemon_formatter_prefixes_every_line_of_a_batch() -> None:
    from outrider.runtime.logs import LinePrefixFormatter

    formatter = LinePrefixFormatter("%(levelname)s [r-1] %(name)s: %(message)s")
    record = logging.LogRecord("outrider.mail", logging.INFO, "x", 1, "%s", ("a\nb",), None)
    assert formatter.format(record) == "INFO [r-1] outrider.mail: a\nINFO [r-1] outrider.mail: b"
    single = logging.LogRecord("outrider.mail", logging.INFO, "x", 1, "only", None, None)
    assert formatter.format(single) == "INFO [r-1] outrider.mail: only"
