from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from outrider.accounting.records import FIELDS
from outrider.accounting.subscriber import row_of
from outrider.events.types import Event, Feedback, RemoteBounce
from outrider.feedback.consumer import FeedbackConsumer
from outrider.feedback.decide import queue_id_of
from outrider.feedback.verp import encode
from outrider.http.sse import event_json
from outrider.suppression.store import Entry, SuppressionStore
from outrider.unsubscribe.token import Unsubscribe, make_token
from outrider.webhooks.payload import event_record, webhook_kind
from tests.unit.feedback import samples

KEY = b"v" * 32
UKEY = b"u" * 32
DOMAIN = "bounce.example.com"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SuppressionStore]:
    s = SuppressionStore(tmp_path / "s.db")
    yield s
    s.close()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def consumer(store: SuppressionStore, events: list[Event]) -> FeedbackConsumer:
    return FeedbackConsumer(
        secrets={DOMAIN: KEY},
        store=store,
        publish=events.append,
        hostname="mta.example.com",
        unsubscribe_secret=lambda: UKEY,
        clock=lambda: 1_800_000_000.0,
    )


def entry(store: SuppressionStore, address: str, scope: str) -> Entry | None:
    return store.check([address], scope).get(address)


def test_postfix_dsn_without_verp(
    consumer: FeedbackConsumer, events: list[Event], store: SuppressionStore
) -> None:
    consumer.consume(f"bounces@{DOMAIN}", samples.POSTFIX, "Q9")
    (bounce,) = events
    assert isinstance(bounce, RemoteBounce)
    assert bounce.recipient == "ann@example.org"
    assert bounce.sender == f"bounces@{DOMAIN}"
    assert bounce.status == "5.1.1"
    assert bounce.category == "bad-mailbox"
    assert bounce.queue_id == "Q1ABCDEF"  # from <Q1ABCDEF@mta.example.com>
    assert bounce.remote_mta == "mx.example.org"
    assert not bounce.verp
    assert entry(store, "ann@example.org", DOMAIN) is not None
    assert consumer.counts["rb"] == 1


def test_verp_recipient_and_job_win(consumer: FeedbackConsumer, events: list[Event]) -> None:
    to = encode(KEY, f"bounces@{DOMAIN}", "someone@example.org", "spring")
    assert to is not None
    consumer.consume(to, samples.OUTLOOK)
    (bounce,) = events
    assert isinstance(bounce, RemoteBounce)
    assert (bounce.recipient, bounce.job_id, bounce.sender) == (
        "someone@example.org",
        "spring",
        f"bounces@{DOMAIN}",
    )
    assert bounce.verp


@pytest.mark.parametrize(
    ("sample", "category"),
    [
        (samples.EXIM, "bad-domain"),
        (samples.GMAIL, "bad-mailbox"),
        (samples.OUTLOOK, "bad-mailbox"),
    ],
)
def test_categories_of_real_dsns(
    consumer: FeedbackConsumer, events: list[Event], sample: bytes, category: str
) -> None:
    consumer.consume(f"bounces@{DOMAIN}", sample)
    (bounce,) = events
    assert isinstance(bounce, RemoteBounce)
    assert bounce.category == category


def test_delayed_dsn_is_ignored(consumer: FeedbackConsumer, events: list[Event]) -> None:
    consumer.consume(f"bounces@{DOMAIN}", samples.DELAYED)
    assert events == []
    assert consumer.counts["ignored"] == 1


def test_plain_bounce_to_verp(
    consumer: FeedbackConsumer, events: list[Event], store: SuppressionStore
) -> None:
    to = encode(KEY, f"bounces@{DOMAIN}", "henry@old.example.org", "j1")
    assert to is not None
    consumer.consume(to, samples.PLAIN_BOUNCE.replace(b"RETURN_PATH", to.encode()))
    (bounce,) = events
    assert isinstance(bounce, RemoteBounce)
    assert (bounce.recipient, bounce.status, bounce.job_id) == (
        "henry@old.example.org",
        "5.1.1",
        "j1",
    )
    assert "no mailbox here" in bounce.diagnostic
    assert entry(store, "henry@old.example.org", DOMAIN) is not None


def test_plain_reply_without_verp_or_failure_is_ignored(
    consumer: FeedbackConsumer, events: list[Event]
) -> None:
    consumer.consume(f"bounces@{DOMAIN}", samples.PLAIN_BOUNCE)
    to = encode(KEY, f"bounces@{DOMAIN}", "henry@old.example.org")
    assert to is not None
    consumer.consume(to, samples.VACATION)
    assert events == []
    assert consumer.counts["ignored"] == 2


def test_forged_verp_is_not_attributed(consumer: FeedbackConsumer, events: list[Event]) -> None:
    consumer.consume(f"bounces+mfrgg-aaaaaa@{DOMAIN}", samples.PLAIN_BOUNCE)
    assert events == []


def test_arf_rfc5965(
    consumer: FeedbackConsumer, events: list[Event], store: SuppressionStore
) -> None:
    consumer.consume(f"abuse@{DOMAIN}", samples.ARF_RFC5965)
    (complaint,) = events
    assert isinstance(complaint, Feedback)
    assert complaint.kind == "complained"
    assert complaint.recipient == "user@example.com"
    assert complaint.sender_domain == "news.example.com"
    assert complaint.detail == "abuse"
    assert complaint.reporter == "SomeGenerator/1.0"
    found = entry(store, "user@example.com", "news.example.com")
    assert found is not None and found.reason == "complaint"


def test_yahoo_arf_with_verp_return_path(consumer: FeedbackConsumer, events: list[Event]) -> None:
    verp = encode(KEY, f"bounces@{DOMAIN}", "frank@yahoo.example", "spring")
    assert verp is not None
    consumer.consume(f"fbl@{DOMAIN}", samples.YAHOO_CFL.replace(b"RETURN_PATH", verp.encode()))
    (complaint,) = events
    assert isinstance(complaint, Feedback)
    assert (complaint.recipient, complaint.job_id, complaint.sender_domain) == (
        "frank@yahoo.example",
        "spring",
        DOMAIN,
    )
    assert complaint.queue_id == "Q5YAHOO"


def test_microsoft_arf_uses_the_returned_to(
    consumer: FeedbackConsumer, events: list[Event]
) -> None:
    consumer.consume(f"jmrp@{DOMAIN}", samples.MICROSOFT_JMRP)
    (complaint,) = events
    assert isinstance(complaint, Feedback)
    assert (complaint.recipient, complaint.sender_domain) == (
        "gina@hotmail.example",
        "news.example.com",
    )


def test_not_spam_is_no_complaint(consumer: FeedbackConsumer, events: list[Event]) -> None:
    consumer.consume(
        f"fbl@{DOMAIN}",
        samples.ARF_RFC5965.replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam"),
    )
    assert events == []


def test_unparseable_is_dropped_and_counted(
    consumer: FeedbackConsumer, events: list[Event]
) -> None:
    assert consumer.consume(f"bounces@{DOMAIN}", b"\r\n\r\n") is None
    assert consumer.counts["dropped"] == 1
    assert events == []


def test_unsubscribe_by_mail(
    consumer: FeedbackConsumer, events: list[Event], store: SuppressionStore
) -> None:
    token = make_token(UKEY, Unsubscribe("ivy@example.org", "news.example.com", "spring", 1))
    head = f"From: ivy@example.org\r\nTo: unsubscribe@{DOMAIN}\r\n"
    mail = f"{head}Subject: unsubscribe:{token}\r\n\r\n".encode()
    consumer.consume(f"unsubscribe@{DOMAIN}", mail)
    (event,) = events
    assert isinstance(event, Feedback)
    assert (event.kind, event.recipient, event.sender_domain) == (
        "unsubscribed",
        "ivy@example.org",
        "news.example.com",
    )
    found = entry(store, "ivy@example.org", "news.example.com")
    assert found is not None and found.reason == "unsubscribe"
    forged = mail.replace(token[-4:].encode(), b"AAAA")
    consumer.consume(f"unsubscribe@{DOMAIN}", forged)
    assert len(events) == 1


def test_auto_add_off_keeps_bounces_off_the_list(
    store: SuppressionStore, events: list[Event]
) -> None:
    consumer = FeedbackConsumer({DOMAIN: KEY}, store, events.append, "h", auto_add=lambda: False)
    consumer.consume(f"bounces@{DOMAIN}", samples.POSTFIX)
    assert len(events) == 1
    assert entry(store, "ann@example.org", DOMAIN) is None


def test_rows_and_json(consumer: FeedbackConsumer, events: list[Event]) -> None:
    to = encode(KEY, f"bounces@{DOMAIN}", "ann@example.org", "spring")
    assert to is not None
    consumer.consume(to, samples.POSTFIX)
    consumer.consume(f"abuse@{DOMAIN}", samples.ARF_RFC5965)
    bounce, complaint = events
    rb = dict(zip(FIELDS, row_of(bounce) or (), strict=True))
    assert (rb["type"], rb["rcpt"], rb["orig"], rb["dsnStatus"], rb["bounceCat"], rb["jobId"]) == (
        "rb",
        "ann@example.org",
        f"bounces@{DOMAIN}",
        "5.1.1",
        "bad-mailbox",
        "spring",
    )
    assert rb["dsnAction"] == "failed" and rb["dsnMta"] == "mx.example.org"
    f = dict(zip(FIELDS, row_of(complaint) or (), strict=True))
    assert (f["type"], f["rcpt"], f["dsnDiag"], f["dsnMta"], f["dlvSourceIp"]) == (
        "f",
        "user@example.com",
        "abuse",
        "SomeGenerator/1.0",
        "192.0.2.1",
    )
    assert webhook_kind(bounce) == "bounced"
    record = event_record(bounce, "bounced")
    assert record["async"] is True and record["job_id"] == "spring"
    assert (event_json(bounce) or {})["type"] == "bounced"
    unsub = Feedback(
        at=0.0, kind="unsubscribed", recipient="a@b.example", sender_domain="b.example"
    )
    assert row_of(unsub) is None


def test_queue_id_of() -> None:
    assert queue_id_of("<Q1@mta.example.com>", "MTA.example.com") == "Q1"
    assert queue_id_of("<Q1@elsewhere.example>", "mta.example.com") == ""
    assert queue_id_of("", "mta.example.com") == ""
