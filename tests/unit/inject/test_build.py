"""MIME structure of built messages: alternative, attachments, encodings, headers.

Every test runs against both builders: the email package's (:func:`build_message`) and
the per-request skeleton the injection uses (:class:`Skeleton`), which must make the
same messages."""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from outrider.inject.build import Skeleton, build_message, raw_message
from outrider.inject.render import compile_content
from outrider.inject.request import parse_request

FAST = {"on": False}


@pytest.fixture(autouse=True, params=["email-package", "skeleton"])
def builder(request: pytest.FixtureRequest) -> Iterator[None]:
    FAST["on"] = request.param == "skeleton"
    yield
    FAST["on"] = False


def built(content: Any, recipient: dict[str, Any] | None = None, **extra: Any) -> bytes:
    req = parse_request(
        {
            "envelope_sender": "b@news.example.com",
            "recipients": [recipient or {"email": "ann@example.org", "name": "Ann"}],
            "content": content,
            **extra,
        }
    )
    rendered = compile_content(req).render(req.recipients[0], 0)
    if FAST["on"]:
        data = Skeleton(req).message(
            req.recipients[0], rendered, message_id="<Q1@mx.test>", now=1_700_000_000
        )
    else:
        data = build_message(
            req, req.recipients[0], rendered, message_id="<Q1@mx.test>", now=1_700_000_000
        )
    assert b"\n" not in data.replace(b"\r\n", b"") and data.endswith(b"\r\n")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert not parsed(data).defects and all(not p.defects for p in parsed(data).walk())
    return data


def parsed(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def lines_end_in_crlf(data: bytes) -> bool:
    return data.count(b"\n") == data.count(b"\r\n") and data.endswith(b"\r\n")


FROM = {"email": "news@news.example.com", "name": "News"}


def test_text_only() -> None:
    data = built({"from": FROM, "subject": "Hi {{ name }}", "text_body": "Hello\n"})
    assert lines_end_in_crlf(data)
    msg = parsed(data)
    assert msg["From"] == "News <news@news.example.com>"
    assert msg["To"] == "Ann <ann@example.org>"
    assert msg["Subject"] == "Hi Ann"
    assert msg["Message-ID"] == "<Q1@mx.test>"
    assert msg["Date"].datetime.timestamp() == 1_700_000_000
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().replace("\r\n", "\n") == "Hello\n"


def test_text_and_html_make_an_alternative() -> None:
    msg = parsed(built({"from": FROM, "text_body": "plain", "html_body": "<p>rich</p>"}))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_attachments_make_a_mixed_message() -> None:
    pdf = b"%PDF-1.4 \x00\xff binary"
    logo = b"\x89PNG..."
    msg = parsed(
        built(
            {
                "from": FROM,
                "text_body": "see attached",
                "html_body": '<img src="cid:logo">',
                "attachments": [
                    {
                        "file_name": "offer.pdf",
                        "content_type": "application/pdf",
                        "data": base64.b64encode(pdf).decode(),
                    },
                    {
                        "file_name": "logo.png",
                        "content_type": "image/png",
                        "data": base64.b64encode(logo).decode(),
                        "content_id": "logo",
                    },
                ],
            }
        )
    )
    assert msg.get_content_type() == "multipart/mixed"
    alternative, attachment = msg.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert attachment.get_filename() == "offer.pdf"
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert attachment.get_content() == pdf
    _text, related = alternative.iter_parts()
    assert related.get_content_type() == "multipart/related"
    html, image = related.iter_parts()
    assert html.get_content_type() == "text/html"
    assert image["Content-ID"] == "<logo>" and image.get_content() == logo
    assert sum(1 for p in msg.walk() if p["MIME-Version"]) == 1


def test_non_ascii_subject_and_name_are_encoded() -> None:
    data = built(
        {"from": {"email": "news@news.example.com", "name": "Nöws"}, "subject": "Grüße {{ name }}",
         "text_body": "Grüße, {{ name }}"},
        {"email": "zoe@example.org", "name": "Zoë Ünal"},
    )  # fmt: skip
    assert data.isascii()  # encoded words and a 7bit-safe body encoding
    assert b"=?utf-8?" in data
    msg = parsed(data)
    assert msg["Subject"] == "Grüße Zoë Ünal"
    assert msg["To"].addresses[0].display_name == "Zoë Ünal"
    assert msg["From"].addresses[0].display_name == "Nöws"
    assert msg["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert msg.get_content().replace("\r\n", "\n") == "Grüße, Zoë Ünal\n"


def test_international_address_uses_utf8_headers() -> None:
    data = built({"from": FROM, "text_body": "x"}, {"email": "zoë@exämple.org", "name": "Zoë"})
    assert "To: Zoë <zoë@exämple.org>".encode() in data


def test_request_headers_are_added_and_replace_the_builders() -> None:
    msg = parsed(
        built(
            {
                "from": FROM,
                "subject": "builder's",
                "text_body": "x",
                "headers": {
                    "List-Unsubscribe": "<https://u.example/{{ email }}>",
                    "Subject": "mine",
                    "X-Campaign": "spring",
                },
            }
        )
    )
    assert msg["List-Unsubscribe"] == "<https://u.example/ann@example.org>"
    assert msg.get_all("Subject") == ["mine"]
    assert msg["X-Campaign"] == "spring"


def test_reply_to() -> None:
    msg = parsed(built({"from": FROM, "reply_to": "help@news.example.com", "text_body": "x"}))
    assert msg["Reply-To"] == "help@news.example.com"


def test_raw_content_gets_crlf() -> None:
    assert raw_message("Subject: x\n\nbody") == b"Subject: x\r\n\r\nbody\r\n"
    assert raw_message("Subject: x\r\n\r\nbody\r\n") == b"Subject: x\r\n\r\nbody\r\n"


def test_long_lines_are_quoted_printable() -> None:
    html = "<p>" + "word " * 400 + "</p>"
    msg = parsed(built({"from": FROM, "html_body": html}))
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg.get_content().rstrip("\r\n") == html


def test_names_that_need_quoting() -> None:
    msg = parsed(
        built({"from": FROM, "text_body": "x"}, {"email": "j@example.org", "name": "Doe, J."})
    )
    assert msg["To"].addresses[0].display_name == "Doe, J."
    assert msg["To"].addresses[0].addr_spec == "j@example.org"


def test_a_body_holding_the_boundary_falls_back() -> None:
    req = parse_request(
        {
            "envelope_sender": "",
            "recipients": [{"email": "a@example.org"}],
            "content": {"from": FROM, "text_body": "t", "html_body": "h"},
        }
    )
    skeleton = Skeleton(req)
    rendered = compile_content(req).render(req.recipients[0], 0)
    tricky = type(rendered)(text_body=f"--{skeleton.alternative}\n", html_body="h")
    data = skeleton.message(req.recipients[0], tricky, message_id="<a@b>", now=0)
    assert skeleton.alternative.encode() not in data.split(b"\r\n\r\n", 1)[0]
    assert [p.get_content_type() for p in parsed(data).iter_parts()] == ["text/plain", "text/html"]
