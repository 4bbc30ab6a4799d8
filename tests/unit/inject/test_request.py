"""Parsing and validating injection requests: every problem, each with its field path."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from outrider.inject.request import (
    MAX_RECIPIENTS,
    Builder,
    InjectError,
    check_address,
    parse_request,
)


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "envelope_sender": "bounces@news.example.com",
        "recipients": [{"email": "ann@example.org", "name": "Ann"}],
        "content": {
            "from": {"email": "news@news.example.com", "name": "News"},
            "subject": "Hello {{ name }}",
            "text_body": "Hi",
        },
    }
    base.update(overrides)
    return base


def problems(data: Any) -> dict[str, str]:
    with pytest.raises(InjectError) as caught:
        parse_request(data)
    return {p.field: p.error for p in caught.value.problems}


def test_a_valid_builder_request() -> None:
    req = parse_request(
        body(substitutions={"offer": "two for one"}, job_id="spring", virtual_mta="pool-a")
    )
    assert req.envelope_sender == "bounces@news.example.com"
    assert req.recipients[0].email == "ann@example.org" and req.recipients[0].name == "Ann"
    assert isinstance(req.content, Builder) and req.content.sender.name == "News"
    assert req.job_id == "spring" and req.virtual_mta == "pool-a"
    assert req.templated and not req.smtputf8


def test_raw_content_and_null_sender() -> None:
    req = parse_request(body(envelope_sender="", content="Subject: x\r\n\r\nhi\r\n"))
    assert req.envelope_sender == "" and req.content.startswith("Subject")
    assert not req.templated


def test_every_bad_field_is_named() -> None:
    recipients = [{"email": f"u{i}@example.org"} for i in range(5)]
    recipients[3] = {"email": "not an address"}
    recipients[4] = {"email": "x@example.org", "nmae": "typo", "substitutions": []}
    found = problems(body(recipients=recipients, envelope_sender="a@@b", envid="has space"))
    assert found["recipients[3].email"] == "not a valid address"
    assert found["recipients[4].nmae"] == "unknown field"
    assert found["recipients[4].substitutions"] == "must be an object"
    assert found["envelope_sender"] == "not a valid address"
    assert "envid" in found


def test_missing_fields_and_wrong_types() -> None:
    found = problems({"recipients": "ann@example.org", "extra": 1})
    assert found["envelope_sender"] == "required"
    assert found["recipients"] == "must be a list"
    assert found["content"] == "required"
    assert found["extra"] == "unknown field"
    assert problems([1, 2]) == {"": "the request body must be a JSON object"}


def test_builder_problems() -> None:
    content = {
        "from": {"email": "bad"},
        "subject": 3,
        "headers": {"Content-Type": "text/plain", "Bad Name": "x", "X-Two": "a\r\nb"},
        "attachments": [
            {"file_name": "a", "content_type": "nonsense", "data": "AAAA"},
            {"file_name": "b", "content_type": "image/png", "data": "!!!"},
        ],
    }
    found = problems(body(content=content))
    assert found["content.from.email"] == "not a valid address"
    assert found["content.subject"] == "must be a string"
    assert found["content"] == "text_body or html_body is required"
    assert "content.headers.Content-Type" in found
    assert found["content.headers.Bad Name"] == "not a valid header name"
    assert "one line" in found["content.headers.X-Two"]
    assert "MIME type" in found["content.attachments[0].content_type"]
    assert found["content.attachments[1].data"] == "not valid base64"


def test_attachment_data_is_decoded() -> None:
    data = base64.b64encode(b"\x00\x01binary").decode()
    req = parse_request(
        body(
            content={
                "from": "news@news.example.com",
                "text_body": "x",
                "attachments": [
                    {"file_name": "a.bin", "content_type": "application/x-bin", "data": data},
                    {"content_type": "text/csv", "data": "a,b\n", "base64": False},
                ],
            }
        )
    )
    assert isinstance(req.content, Builder)
    assert [a.data for a in req.content.attachments] == [b"\x00\x01binary", b"a,b\n"]


def test_recipient_limit() -> None:
    many = [{"email": f"u{i}@example.org"} for i in range(MAX_RECIPIENTS + 1)]
    assert "at most" in problems(body(recipients=many))["recipients"]
    assert problems(body(recipients=[]))["recipients"] == "at least one recipient is required"
    assert len(parse_request(body(recipients=many[:MAX_RECIPIENTS])).recipients) == MAX_RECIPIENTS


def test_template_engine() -> None:
    assert parse_request(body(template_engine="jinja"))
    assert "template_engine" in problems(body(template_engine="handlebars"))


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("ann@example.org", True),
        ("first.last+tag@sub.example.org", True),
        ('"john doe"@example.org', True),
        ("zoë@exämple.org", True),
        ("user@[192.0.2.1]", True),
        ("user@[999.1.1.1]", False),
        ("no-at-sign", False),
        ("a@b@c", False),
        ("<ann@example.org>", False),
        ("ann@exa mple.org", False),
        ("ann@-bad-.org", False),
        ("ann@example.org\r\nRCPT TO:<x@y>", False),
        ("", False),
    ],
)
def test_addresses_follow_the_smtp_grammar(address: str, ok: bool) -> None:
    assert (check_address(address) is None) is ok


def test_international_addresses_need_smtputf8() -> None:
    req = parse_request(body(recipients=[{"email": "zoë@example.org"}]))
    assert req.smtputf8
