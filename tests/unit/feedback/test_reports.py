from __future__ import annotations

import contextlib

import pytest

from outrider.feedback.reports import (
    ArfReport,
    DsnReport,
    PlainReply,
    ReportError,
    address_of,
    parse_report,
)
from tests.unit.feedback import samples


def test_postfix_dsn() -> None:
    report = parse_report(samples.POSTFIX)
    assert isinstance(report, DsnReport)
    assert report.reporting_mta == "mail.example.net"
    (rcpt,) = report.recipients
    assert rcpt.address == "ann@example.org"
    assert rcpt.action == "failed"
    assert rcpt.status == "5.1.1"
    assert rcpt.remote_mta == "mx.example.org"
    assert rcpt.diagnostic.startswith("550 5.1.1 <ann@example.org>: Recipient address rejected:")
    assert "User unknown in virtual mailbox table" in rcpt.diagnostic  # unfolded
    assert report.returned.message_id == "<Q1ABCDEF@mta.example.com>"
    assert report.returned.sender == "bounces@bounce.example.com"
    assert report.returned.to == "ann@example.org"


def test_exim_dsn_with_returned_message() -> None:
    report = parse_report(samples.EXIM)
    assert isinstance(report, DsnReport)
    (rcpt,) = report.recipients
    assert (rcpt.address, rcpt.status, rcpt.remote_mta) == (
        "bob@example.org",
        "5.0.0",
        "mx.example.org",
    )
    assert rcpt.diagnostic == "550 No such domain at this location"
    assert report.returned.message_id == "<Q2XYZ@mta.example.com>"


def test_gmail_dsn() -> None:
    report = parse_report(samples.GMAIL)
    assert isinstance(report, DsnReport)
    (rcpt,) = report.recipients
    assert rcpt.address == "carol@gmail.example"
    assert rcpt.status == "5.1.1"
    assert rcpt.diagnostic.startswith(
        "550-5.1.1 The email account that you tried to reach does not exist."
    )
    assert report.returned.to == "carol@gmail.example"


def test_outlook_dsn_prefers_original_recipient() -> None:
    report = parse_report(samples.OUTLOOK)
    assert isinstance(report, DsnReport)
    (rcpt,) = report.recipients
    assert rcpt.address == "dave@outlook.example"
    assert rcpt.original_recipient == "rfc822;dave@outlook.example"
    assert rcpt.remote_mta == "AM0PR01MB0001.eurprd01.prod.outlook.example"  # Reporting-MTA
    assert rcpt.status == "5.5.0"
    assert report.returned.message_id == "<Q4OUT@mta.example.com>"


def test_delayed_dsn_is_read_with_its_action() -> None:
    report = parse_report(samples.DELAYED)
    assert isinstance(report, DsnReport)
    assert [r.action for r in report.recipients] == ["delayed"]


def test_arf_rfc5965_example() -> None:
    report = parse_report(samples.ARF_RFC5965)
    assert isinstance(report, ArfReport)
    assert report.feedback_type == "abuse"
    assert report.user_agent == "SomeGenerator/1.0"
    assert report.original_rcpt_to == "user@example.com"
    assert report.original_mail_from == "somespammer@news.example.com"
    assert report.source_ip == "192.0.2.1"
    assert report.arrival_date == "Thu, 8 Mar 2005 14:00:00 EDT"
    assert report.returned.message_id == "<8787KJKJ3K4J3K4J3K4J3.mail@example.net>"


def test_microsoft_style_arf_without_rcpt_field() -> None:
    report = parse_report(samples.MICROSOFT_JMRP)
    assert isinstance(report, ArfReport)
    assert report.original_rcpt_to == ""
    assert report.returned.to == "gina@hotmail.example"
    assert report.returned.sender == "bounces@news.example.com"


def test_plain_text_bounce() -> None:
    report = parse_report(samples.PLAIN_BOUNCE.replace(b"RETURN_PATH", b"x@bounce.example.com"))
    assert isinstance(report, PlainReply)
    assert report.status == "5.1.1"
    assert report.subject == "failure notice"


@pytest.mark.parametrize("data", [b"", b"   \r\n", b"\r\n\r\nno header at all"])
def test_not_a_message(data: bytes) -> None:
    with pytest.raises(ReportError):
        parse_report(data)


@pytest.mark.parametrize(
    "data",
    [
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=X\r\n\r\n--X\r\n"
        b"Content-Type: message/delivery-status\r\n\r\ngarbage\x00\xff\r\n--X",
        b"Content-Type: multipart/report; boundary=\r\n\r\n",
        b"Subject: =?utf-8?B?broken?=\r\nContent-Type: message/feedback-report\r\n\r\n\xff\xfe",
        b"From: a\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=Z\r\n"
        b"\r\n--Z\r\nContent-Type: message/feedback-report\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\nRmVlZGJhY2stVHlwZTogYWJ1c2UK\r\n--Z--\r\n",
    ],
)
def test_malformed_reports_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(ReportError):
        parse_report(data)


def test_base64_feedback_part() -> None:
    data = (
        b"From: a@b.example\r\nContent-Type: multipart/report; report-type=feedback-report;"
        b" boundary=Z\r\n\r\n--Z\r\nContent-Type: message/feedback-report\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nRmVlZGJhY2stVHlwZTogYWJ1c2UK\r\n--Z--\r\n"
    )
    report = parse_report(data)
    assert isinstance(report, ArfReport)
    assert report.feedback_type == "abuse"


def test_address_of() -> None:
    assert address_of("rfc822; <Ann@Example.org>") == "Ann@Example.org"
    assert address_of("x400; /C=US/") == ""
    assert address_of("ann@example.org") == "ann@example.org"
