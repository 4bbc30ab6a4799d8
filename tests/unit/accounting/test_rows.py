"""The rows the subscriber writes for each event, and ``[accounting] records``."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from outrider.accounting.records import FIELDS
from outrider.accounting.subscriber import (
    AccountingSubscriber,
    received_rows,
    row_of,
    wanted_kinds,
)
from outrider.accounting.writer import AccountingLog
from outrider.config.model import AccountingSettings
from outrider.events.types import (
    Bounced,
    Deferred,
    Delivered,
    Event,
    MessageDone,
    MessageInfo,
    MessageQueued,
    NoticeDue,
    QueueEvent,
)
from outrider.message.envelope import Recipient

RECEIVED = 1_795_811_400.0  # 2026-11-27 20:30:00 UTC
AT = 1_795_811_465.0  # 2026-11-27 20:31:05 UTC


def info(source: str = "smtp", **overrides: object) -> MessageInfo:
    fields: dict[str, object] = {
        "queue_id": "1A2B3C4D",
        "sender": "news@shop.example",
        "received_at": RECEIVED,
        "job_id": "nov-promo",
        "envid": "ENV1",
        "msg_id": "<m1@shop.example>",
        "size": 5120,
        "source": source,
    }
    fields.update(overrides)
    return MessageInfo(**fields)  # type: ignore[arg-type]


def delivered(msg: MessageInfo | None = None, **overrides: object) -> Delivered:
    event = Delivered(
        AT,
        msg or info(),
        "alice@example.org",
        "rfc822;Alice@Example.org",
        "2.0.0",
        "250 2.0.0 OK q7si1",
        "mx1.example.org",
        "example.org/default",
        "default",
        "198.51.100.7",
        "203.0.113.25",
    )
    for name, value in overrides.items():
        setattr(event, name, value)
    return event


def as_dict(row: tuple[str, ...] | None) -> dict[str, str]:
    assert row is not None
    assert len(row) == len(FIELDS)
    return dict(zip(FIELDS, row, strict=True))


def test_delivered_row_has_every_column() -> None:
    msg = info(src_mta="client.shop.example (192.0.2.10)")
    event = delivered(msg, esmtp="PIPELINING SIZE 8BITMIME", pool="pool-a")
    assert as_dict(row_of(event)) == {
        "type": "d",
        "timeLogged": "2026-11-27 20:31:05+0000",
        "timeQueued": "2026-11-27 20:30:00+0000",
        "orig": "news@shop.example",
        "rcpt": "alice@example.org",
        "orcpt": "rfc822;Alice@Example.org",
        "dsnAction": "relayed",
        "dsnStatus": "2.0.0",
        "dsnDiag": "250 2.0.0 OK q7si1",
        "dsnMta": "mx1.example.org",
        "dlvSourceIp": "198.51.100.7",
        "dlvDestinationIp": "203.0.113.25",
        "queue": "example.org/default",
        "vmta": "default",
        "jobId": "nov-promo",
        "envId": "ENV1",
        "msgId": "<m1@shop.example>",
        "size": "5120",
        "rule": "",
        "queueId": "1A2B3C4D",
        "dlvSize": "5120",
        "srcType": "smtp",
        "dlvType": "smtp",
        "bounceCat": "",
        "srcMta": "client.shop.example (192.0.2.10)",
        "dlvEsmtpAvailable": "PIPELINING SIZE 8BITMIME",
        "vmtaPool": "pool-a",
    }


@pytest.mark.parametrize(
    ("source", "src_type"),
    [("smtp", "smtp"), ("api", "api"), ("dsn", "local"), ("list", "local")],
)
def test_src_type_names_where_the_message_came_from(source: str, src_type: str) -> None:
    assert as_dict(row_of(delivered(info(source))))["srcType"] == src_type


def test_bounce_and_deferral_rows() -> None:
    common = (AT, info(), "bob@example.org", "", "5.1.1", "550 5.1.1 unknown", "mx1.example.org")
    bounced = as_dict(row_of(Bounced(*common, "example.org/default", "default", "", "192.0.2.1")))
    assert (bounced["type"], bounced["dsnAction"], bounced["dsnStatus"]) == ("b", "failed", "5.1.1")
    assert (bounced["dlvType"], bounced["bounceCat"], bounced["queueId"]) == (
        "smtp",
        "",
        "1A2B3C4D",
    )
    deferred = as_dict(row_of(Deferred(*common, "example.org/default", "default", "", "192.0.2.1")))
    assert (deferred["type"], deferred["dsnAction"]) == ("t", "delayed")


def test_an_outcome_decided_without_a_connection_has_no_delivery_type() -> None:
    """DNS failures, expiry and an operator's delete reached no next hop."""
    event = Bounced(AT, info(), "x@nowhere.test", "", "5.1.2", "no MX", "", "nowhere.test", "")
    row = as_dict(row_of(event))
    assert (row["dlvType"], row["dlvDestinationIp"], row["queue"]) == ("", "", "nowhere.test")


def test_nul_in_any_text_cell_is_replaced() -> None:
    msg = info(sender="a\x00@x", job_id="j\x00", envid="e\x00", msg_id="<m\x00>")
    event = delivered(
        msg, recipient="r\x00@x", orcpt="o\x00", diagnostic="250\x00", remote_mta="m\x00"
    )
    row = row_of(event)
    assert row is not None and not any("\x00" in cell for cell in row)
    cells = as_dict(row)
    assert (cells["orig"], cells["rcpt"], cells["dsnDiag"]) == (
        "a\ufffd@x",
        "r\ufffd@x",
        "250\ufffd",
    )
    assert (cells["jobId"], cells["envId"], cells["msgId"]) == ("j\ufffd", "e\ufffd", "<m\ufffd>")


def test_queue_row() -> None:
    event = QueueEvent(
        AT, "example.org/default", "default", "backoff", "421 slow down", "mx1", "^421"
    )
    row = as_dict(row_of(event))
    assert (row["type"], row["dsnAction"], row["rule"], row["dsnMta"]) == (
        "q",
        "backoff",
        "^421",
        "mx1",
    )
    assert (row["queueId"], row["dlvSize"], row["srcType"], row["dlvType"]) == ("", "", "", "")


def queued(source: str = "smtp") -> MessageQueued:
    rcpts = [
        Recipient("alice@example.org", orcpt="rfc822;Alice@Example.org"),
        Recipient("b@x.test"),
    ]
    return MessageQueued(AT, info(source), len(rcpts), "pool1", rcpts)


def test_received_rows_one_per_recipient_at_the_receipt_time() -> None:
    rows = [as_dict(r) for r in received_rows(queued())]
    assert [(r["rcpt"], r["orcpt"]) for r in rows] == [
        ("alice@example.org", "rfc822;Alice@Example.org"),
        ("b@x.test", ""),
    ]
    for row in rows:
        assert row["type"] == "r"
        assert row["timeLogged"] == row["timeQueued"] == "2026-11-27 20:30:00+0000"
        assert (row["orig"], row["vmta"], row["jobId"], row["envId"]) == (
            "news@shop.example",
            "pool1",
            "nov-promo",
            "ENV1",
        )
        assert (row["msgId"], row["size"], row["queueId"], row["srcType"]) == (
            "<m1@shop.example>",
            "5120",
            "1A2B3C4D",
            "smtp",
        )
        # Nothing is delivered yet, and the queue waits for the route (an MX look-up).
        for empty in ("dsnAction", "dsnStatus", "dsnDiag", "dsnMta", "queue", "dlvSize"):
            assert row[empty] == "", empty
        assert (row["dlvType"], row["bounceCat"], row["rule"]) == ("", "", "")
    assert row_of(queued()) is None  # not a single row


def test_received_rows_of_a_dsn_are_local() -> None:
    assert {as_dict(r)["srcType"] for r in received_rows(queued("dsn"))} == {"local"}


EVENTS: list[Event] = [
    queued(),
    delivered(),
    Bounced(AT, info(), "b@x.test", "", "5.1.1", "550 no", "mx", "x.test/default", "default"),
    Deferred(AT, info(), "c@x.test", "", "4.0.0", "451 later", "mx", "x.test/default", "default"),
    QueueEvent(AT, "x.test/default", "default", "normal"),
    MessageDone(AT, "1A2B3C4D"),
    NoticeDue(AT, "1A2B3C4D", "F"),
]


def written_types(tmp_path: Path, sub: AccountingSubscriber) -> list[str]:
    sub.handle(EVENTS)
    sub.log.close()
    types: list[str] = []
    for path in sorted(tmp_path.glob("acct-*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            types += [row["type"] for row in csv.DictReader(fh)]
    return types


def test_default_records_are_d_b_t_q(tmp_path: Path) -> None:
    log = AccountingLog(tmp_path, clock=lambda: AT)
    assert written_types(tmp_path, AccountingSubscriber(log)) == ["d", "b", "t", "q"]


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (("r", "d", "b", "t", "q"), ["r", "r", "d", "b", "t", "q"]),
        (("r",), ["r", "r"]),
        (("b",), ["b"]),
        (("q", "t"), ["t", "q"]),
        ((), []),
    ],
)
def test_records_chooses_the_types_written(
    tmp_path: Path, records: tuple[str, ...], expected: list[str]
) -> None:
    log = AccountingLog(tmp_path, clock=lambda: AT)
    assert written_types(tmp_path, AccountingSubscriber(log, records)) == expected


def test_configure_applies_records_and_keep_on_reload(tmp_path: Path) -> None:
    log = AccountingLog(tmp_path, clock=lambda: AT)
    sub = AccountingSubscriber(log)
    sub.configure(AccountingSettings(records=("r",), keep=86_400.0))
    assert log.keep == 86_400.0
    assert written_types(tmp_path, sub) == ["r", "r"]


def test_the_filter_is_one_lookup_by_event_class() -> None:
    kinds = wanted_kinds(["d", "r"])
    assert kinds == {Delivered: ("d", "relayed"), MessageQueued: ("r", "")}
