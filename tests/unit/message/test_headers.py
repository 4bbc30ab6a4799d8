"""Header helpers: trace header format and byte-level header lookup/removal."""

from __future__ import annotations

import email
import email.policy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outrider.message.headers import (
    extract_and_remove_header,
    header_value,
    received_header,
    rfc5322_date,
    split_header_block,
)

NOW = 1_795_811_465.0  # Fri, 27 Nov 2026 20:31:05 +0000


def test_rfc5322_date_is_utc_and_locale_free() -> None:
    assert rfc5322_date(NOW) == "Fri, 27 Nov 2026 20:31:05 +0000"
    assert rfc5322_date(0) == "Thu, 1 Jan 1970 00:00:00 +0000"


class TestReceivedHeader:
    def make(self, **overrides: object) -> bytes:
        args: dict[str, object] = {
            "helo": "client.example.com",
            "client_ip": "192.0.2.10",
            "client_rdns": "host.example.com",
            "by_host": "mx.example.net",
            "protocol": "ESMTPS",
            "queue_id": "4Q7xYz",
            "recipient": "user@example.org",
            "now": NOW,
        }
        args.update(overrides)
        return received_header(**args)  # type: ignore[arg-type]

    def test_full_form(self) -> None:
        assert self.make() == (
            b"Received: from client.example.com (host.example.com [192.0.2.10])\r\n"
            b"\tby mx.example.net (Outrider) with ESMTPS id 4Q7xYz\r\n"
            b"\tfor <user@example.org>; Fri, 27 Nov 2026 20:31:05 +0000\r\n"
        )

    def test_parses_as_one_header(self) -> None:
        msg = email.message_from_bytes(self.make() + b"\r\nbody", policy=email.policy.default)
        value = str(msg["Received"])
        assert value.startswith("from client.example.com (host.example.com [192.0.2.10])")
        assert value.endswith("; Fri, 27 Nov 2026 20:31:05 +0000")

    def test_without_rdns_or_recipient(self) -> None:
        out = self.make(client_rdns=None, recipient=None)
        assert out.startswith(b"Received: from client.example.com ([192.0.2.10])\r\n")
        assert out.endswith(b"\t; Fri, 27 Nov 2026 20:31:05 +0000\r\n")
        assert b"for <" not in out

    def test_ipv6_literal(self) -> None:
        out = self.make(client_ip="2001:db8::1", client_rdns=None)
        assert b"([IPv6:2001:db8::1])" in out

    def test_missing_helo_uses_the_address_literal(self) -> None:
        assert self.make(helo="").startswith(b"Received: from [192.0.2.10] (")

    def test_client_text_cannot_inject_lines_or_clauses(self) -> None:
        out = self.make(helo="evil\r\nX-Injected: 1 (x) ;", recipient="a\r\nb@example.org")
        assert out.count(b"\r\n") == 3
        assert b"X-Injected: 1" not in out
        assert b"from evil__X-Injected:_1__x___ (" in out
        assert b"for <a__b@example.org>;" in out

    def test_utf8_only_for_utf8_protocols(self) -> None:
        utf8 = self.make(protocol="UTF8SMTPS", recipient="δοκιμή@παράδειγμα.example")
        assert "<δοκιμή@παράδειγμα.example>".encode() in utf8
        ascii_only = self.make(protocol="ESMTP", recipient="δοκιμή@example")
        assert ascii_only.isascii()
        assert b"for <??????@example>;" in ascii_only


class TestSplitHeaderBlock:
    @pytest.mark.parametrize(
        ("message", "headers", "rest"),
        [
            (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", b"A: 1\r\nB: 2\r\n", b"\r\nbody\r\n"),
            (b"A: 1\r\n\r\n", b"A: 1\r\n", b"\r\n"),
            (b"A: 1\r\nB: 2\r\n", b"A: 1\r\nB: 2\r\n", b""),  # no blank line: all headers
            (b"A: 1", b"A: 1", b""),
            (b"\r\nbody only\r\n", b"", b"\r\nbody only\r\n"),
            (b"", b"", b""),
            (b"A: 1\r\n\r\nX: not a header\r\n\r\n", b"A: 1\r\n", b"\r\nX: not a header\r\n\r\n"),
        ],
    )
    def test_split(self, message: bytes, headers: bytes, rest: bytes) -> None:
        got = split_header_block(message)
        assert got == (headers, rest)
        assert got[0] + got[1] == message


MESSAGE = (
    b"X-Job: campaign-42\r\n"
    b"From: a@example.com\r\n"
    b"Subject: folded\r\n"
    b" subject line\r\n"
    b"x-job:  second\r\n"
    b"\tcontinued \r\n"
    b"Message-ID:\r\n"
    b" <abc@example.com>\r\n"
    b"X-Jobs: not the same header\r\n"
    b"\r\n"
    b"X-Job: body text that only looks like a header\r\n"
)


class TestExtractAndRemoveHeader:
    def test_removes_every_occurrence_with_continuations(self) -> None:
        out, value = extract_and_remove_header(MESSAGE, "X-Job")
        assert value == "campaign-42"
        assert out == (
            b"From: a@example.com\r\n"
            b"Subject: folded\r\n"
            b" subject line\r\n"
            b"Message-ID:\r\n"
            b" <abc@example.com>\r\n"
            b"X-Jobs: not the same header\r\n"
            b"\r\n"
            b"X-Job: body text that only looks like a header\r\n"
        )

    def test_first_value_is_unfolded_and_stripped(self) -> None:
        message = b"From: a\r\nX-Job:  multi\r\n\tline \r\n value \r\nX-Job: 2\r\n\r\nbody"
        out, value = extract_and_remove_header(message, "x-JOB")
        assert value == "multi\tline  value"
        assert out == b"From: a\r\n\r\nbody"

    def test_header_on_the_first_line_and_last_line(self) -> None:
        out, value = extract_and_remove_header(b"X-Job: 1\r\n\r\nbody", "X-Job")
        assert (out, value) == (b"\r\nbody", "1")
        out, value = extract_and_remove_header(b"A: b\r\nX-Job: 2", "X-Job")
        assert (out, value) == (b"A: b\r\n", "2")

    def test_absent_header_returns_the_same_object(self) -> None:
        message = b"From: a\r\nSubject: x-job: no\r\n\r\nX-Job: body\r\n"
        out, value = extract_and_remove_header(message, "X-Job")
        assert value is None
        assert out is message

    def test_message_without_header_block(self) -> None:
        message = b"\r\nX-Job: in the body\r\n"
        assert extract_and_remove_header(message, "X-Job") == (message, None)

    def test_whitespace_before_colon_is_the_same_field(self) -> None:
        out, value = extract_and_remove_header(b"X-Job \t: 7\r\nA: b\r\n\r\n", "X-Job")
        assert (out, value) == (b"A: b\r\n\r\n", "7")

    def test_prefix_of_a_longer_name_is_not_matched(self) -> None:
        message = b"X-Jobs: 1\r\nX-Job-Id: 2\r\n\r\n"
        assert extract_and_remove_header(message, "X-Job") == (message, None)

    def test_empty_value(self) -> None:
        assert extract_and_remove_header(b"X-Job:\r\n\r\nb", "X-Job") == (b"\r\nb", "")

    def test_non_ascii_value_is_decoded_as_utf8(self) -> None:
        _, value = extract_and_remove_header("X-Job: café\r\n\r\n".encode(), "X-Job")
        assert value == "café"


class TestHeaderValue:
    def test_first_occurrence_unfolded(self) -> None:
        assert header_value(MESSAGE, "message-id") == "<abc@example.com>"
        assert header_value(MESSAGE, "X-Job") == "campaign-42"
        assert header_value(MESSAGE, "Subject") == "folded subject line"

    def test_absent_or_only_in_body(self) -> None:
        assert header_value(MESSAGE, "Date") is None
        assert header_value(b"A: 1\r\n\r\nDate: today\r\n", "Date") is None
        assert header_value(b"\r\nDate: today\r\n", "Date") is None
        assert header_value(b"", "Date") is None

    def test_agrees_with_the_email_package(self) -> None:
        parsed = email.message_from_bytes(MESSAGE, policy=email.policy.compat32)
        assert header_value(MESSAGE, "Subject") == "folded subject line"
        assert " ".join(str(parsed["Subject"]).split()) == "folded subject line"


_names = st.sampled_from(["X-Job", "x-job", "From", "Subject", "X-Jobs", "X-Virtual-MTA"])
_values = st.text(alphabet="abc XYZ:;<>@.-", max_size=12)
_field = st.tuples(_names, _values, st.lists(_values, max_size=2))


@given(st.lists(_field, max_size=6), st.binary(max_size=40))
def test_removal_matches_a_reference_model(
    fields: list[tuple[str, str, list[str]]], body: bytes
) -> None:
    def render(selected: list[tuple[str, str, list[str]]]) -> bytes:
        return b"".join(
            f"{name}:{value}\r\n".encode() + b"".join(f" {c}\r\n".encode() for c in cont)
            for name, value, cont in selected
        )

    message = render(fields) + b"\r\n" + body
    out, value = extract_and_remove_header(message, "X-Job")
    kept = [f for f in fields if f[0].lower() != "x-job"]
    assert out == (render(kept) + b"\r\n" + body if len(kept) < len(fields) else message)
    jobs = [f for f in fields if f[0].lower() == "x-job"]
    if jobs:
        _, first, cont = jobs[0]
        assert value == (first + "".join(f" {c}" for c in cont)).strip()
        assert header_value(message, "X-JOB") == value
    else:
        assert value is None
    assert header_value(out, "X-Job") is None
