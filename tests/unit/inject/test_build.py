"""MIME structure of built messages: alternative, attachments, encodings, headers."""

from __future__ import annotations

import base64
import email
import email.policy
from email.message import EmailMessage
from typing import Any

from outrider.inject.build import build_message, raw_message
from outrider.inject.render import compile_content
from outrider.inject.request import parse_request


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
    return build_message(
        req, req.recipients[0], rendered, message_id="<Q1@mx.test>", now=1_700_000_000
    )


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
    assert msg["Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"
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
