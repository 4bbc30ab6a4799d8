"""DSN building: structure, RFC 3464 fields, NOTIFY/RET rules and the RFC 6533 variant."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage, Message

import pytest

from outrider.dsn.builder import (
    _MAX_WORD,
    FailedRecipient,
    _header,
    build_dsn,
    should_bounce,
    utf8_addr_decode,
    wants_dsn,
)
from outrider.message.envelope import Envelope, Notify, Recipient, Ret

NOW = 1_795_811_465.0  # Fri, 27 Nov 2026 20:31:05 +0000
ARRIVED = NOW - 3600
HOST = "mta.example.net"
ORIGINAL = (
    b"From: Sender <sender@example.com>\r\n"
    b"To: user@example.org\r\n"
    b"Subject: quarterly report\r\n"
    b"Message-ID: <orig-1@example.com>\r\n"
    b"\r\n"
    b"The body of the original message.\r\n"
)


def envelope(**overrides: object) -> Envelope:
    env = Envelope(
        queue_id="4Q7xYz",
        sender="sender@example.com",
        recipients=[Recipient("user@example.org")],
        received_at=ARRIVED,
    )
    for key, value in overrides.items():
        setattr(env, key, value)
    return env


def failed(
    address: str = "user@example.org",
    status: str = "5.1.1",
    diagnostic: str = "550 5.1.1 <user@example.org>: no such user",
    remote_mta: str = "mx.example.org",
    **rcpt: object,
) -> FailedRecipient:
    return FailedRecipient(Recipient(address, **rcpt), status, diagnostic, remote_mta)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> list[Message]:
    return list(msg.iter_parts())


def status_blocks(msg: EmailMessage) -> list[Message]:
    report = parts(msg)[1]
    assert report.get_content_type() == "message/delivery-status"
    payload = report.get_payload()
    assert isinstance(payload, list)
    blocks = [block for block in payload if isinstance(block, Message)]
    assert len(blocks) == len(payload)
    return blocks


def attached(part: Message) -> Message:
    """The message inside a message/rfc822 or message/global part."""
    payload = part.get_payload()
    assert isinstance(payload, list) and len(payload) == 1
    inner = payload[0]
    assert isinstance(inner, Message)
    return inner


def global_status_blocks(data: bytes) -> list[Message]:
    """The email package splits only message/delivery-status into blocks; do it by hand."""
    boundary = parse(data).get_boundary()
    assert boundary
    report = data.split(f"\r\n--{boundary}\r\n".encode())[2]
    head, body = report.split(b"\r\n\r\n", 1)
    assert b"Content-Type: message/global-delivery-status" in head
    return [
        email.message_from_string(block, policy=email.policy.default)
        for block in body.decode("utf-8").split("\r\n\r\n")
        if block.strip()
    ]


def text_of(msg: EmailMessage) -> str:
    part = parts(msg)[0]
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    return content


def build(
    env: Envelope | None = None, rcpts: list[FailedRecipient] | None = None, **kw: object
) -> bytes:
    return build_dsn(
        env or envelope(),
        rcpts or [failed()],
        kw.pop("original", ORIGINAL),  # type: ignore[arg-type]
        reporting_mta=HOST,
        now=NOW,
        **kw,  # type: ignore[arg-type]
    )


class TestPolicy:
    @pytest.mark.parametrize("sender", ["", "<>", " "])
    def test_never_bounce_a_bounce(self, sender: str) -> None:
        assert not should_bounce(envelope(sender=sender))
        with pytest.raises(ValueError, match="null reverse-path"):
            build(envelope(sender=sender))

    def test_ordinary_sender_is_bounced(self) -> None:
        assert should_bounce(envelope())

    @pytest.mark.parametrize(
        ("notify", "expected"),
        [
            (None, {"failed": True, "delayed": True, "delivered": False}),
            (Notify.NEVER, {"failed": False, "delayed": False, "delivered": False}),
            (Notify.SUCCESS, {"failed": False, "delayed": False, "delivered": True}),
            (Notify.FAILURE, {"failed": True, "delayed": False, "delivered": False}),
            (Notify.DELAY, {"failed": False, "delayed": True, "delivered": False}),
            (
                Notify.SUCCESS | Notify.FAILURE | Notify.DELAY,
                {"failed": True, "delayed": True, "delivered": True},
            ),
        ],
    )
    def test_wants_dsn_follows_notify(
        self, notify: Notify | None, expected: dict[str, bool]
    ) -> None:
        rcpt = Recipient("user@example.org", notify=notify)
        assert {kind: wants_dsn(rcpt, kind) for kind in expected} == expected  # type: ignore[arg-type]

    def test_rejects_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match="action"):
            build(action="bounced")
        with pytest.raises(ValueError, match="at least one"):
            build_dsn(envelope(), [], ORIGINAL, reporting_mta=HOST, now=NOW)


class TestFailedNotice:
    def test_outer_headers(self) -> None:
        data = build(queue_id_of_dsn="DSN123")
        assert data.count(b"\n") == data.count(b"\r\n")  # CRLF only
        msg = parse(data)
        assert msg["From"] == f"Mail Delivery System <MAILER-DAEMON@{HOST}>"
        assert msg["To"] == "sender@example.com"
        assert data.startswith(b"From: Mail Delivery System <MAILER-DAEMON@mta.example.net>\r\n")
        assert b"\r\nTo: <sender@example.com>\r\n" in data
        assert msg["Subject"] == "Undelivered Mail Returned to Sender"
        assert msg["Date"] == "Fri, 27 Nov 2026 20:31:05 +0000"
        assert msg["Message-ID"] == "<DSN123@mta.example.net>"
        assert msg["Auto-Submitted"] == "auto-replied"
        assert msg["MIME-Version"] == "1.0"
        assert msg.get_content_type() == "multipart/report"
        assert msg.get_param("report-type") == "delivery-status"
        assert data.isascii()

    def test_generated_message_id_without_dsn_queue_id(self) -> None:
        msg_id = parse(build())["Message-ID"]
        assert msg_id.startswith("<4Q7xYz.") and msg_id.endswith("@mta.example.net>")

    def test_three_parts(self) -> None:
        msg = parse(build())
        assert [p.get_content_type() for p in parts(msg)] == [
            "text/plain",
            "message/delivery-status",
            "message/rfc822",
        ]

    def test_per_message_and_per_recipient_fields(self) -> None:
        env = envelope(envid="ENV-77")
        rcpt = failed(orcpt="rfc822;User@Example.ORG")
        blocks = status_blocks(parse(build(env, [rcpt])))
        assert len(blocks) == 2
        per_message, per_rcpt = blocks
        assert per_message["Reporting-MTA"] == "dns; mta.example.net"
        assert per_message["Original-Envelope-Id"] == "ENV-77"
        assert per_message["Arrival-Date"] == "Fri, 27 Nov 2026 19:31:05 +0000"
        assert per_message["X-Outrider-Queue-ID"] == "4Q7xYz"
        assert per_rcpt["Original-Recipient"] == "rfc822;User@Example.ORG"
        assert per_rcpt["Final-Recipient"] == "rfc822; user@example.org"
        assert per_rcpt["Action"] == "failed"
        assert per_rcpt["Status"] == "5.1.1"
        assert per_rcpt["Remote-MTA"] == "dns; mx.example.org"
        assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 <user@example.org>: no such user"
        assert per_rcpt["Last-Attempt-Date"] == "Fri, 27 Nov 2026 20:31:05 +0000"
        assert per_rcpt["Will-Retry-Until"] is None

    def test_optional_fields_absent(self) -> None:
        rcpt = failed(diagnostic="Host or domain name not found", remote_mta="")
        per_message, per_rcpt = status_blocks(parse(build(envelope(), [rcpt])))
        assert per_message["Original-Envelope-Id"] is None
        assert per_rcpt["Original-Recipient"] is None
        assert per_rcpt["Remote-MTA"] is None
        assert per_rcpt["Diagnostic-Code"] == "X-Outrider; Host or domain name not found"

    def test_all_recipients_in_one_notice(self) -> None:
        rcpts = [
            failed("a@example.org", "5.1.1", "550 5.1.1 unknown a"),
            failed("b@example.net", "5.2.2", "552 5.2.2 mailbox full", remote_mta="mx.example.net"),
            failed("c@example.com", "4.4.7", "message expired after 5 days", remote_mta=""),
        ]
        msg = parse(build(envelope(), rcpts))
        blocks = status_blocks(msg)[1:]
        assert [b["Final-Recipient"] for b in blocks] == [
            "rfc822; a@example.org",
            "rfc822; b@example.net",
            "rfc822; c@example.com",
        ]
        assert [b["Status"] for b in blocks] == ["5.1.1", "5.2.2", "4.4.7"]
        text = text_of(msg)
        for address, reason in [
            ("a@example.org", "mx.example.org said: 550 5.1.1 unknown a"),
            ("b@example.net", "mx.example.net said: 552 5.2.2 mailbox full"),
            ("c@example.com", "message expired after 5 days"),
        ]:
            assert f"<{address}>\r\n    {reason}\r\n" in text

    def test_full_message_returned_when_ret_absent_or_full(self) -> None:
        for ret in (None, Ret.FULL):
            msg = parse(build(envelope(ret=ret)))
            inner = attached(parts(msg)[2])
            assert inner["Subject"] == "quarterly report"
            assert "The body of the original message." in str(inner.get_payload())
            assert "A copy of the message is attached." in text_of(msg)

    def test_ret_hdrs_returns_only_the_header_block(self) -> None:
        data = build(envelope(ret=Ret.HDRS))
        msg = parse(data)
        returned = parts(msg)[2]
        assert returned.get_content_type() == "text/rfc822-headers"
        assert b"The body of the original message." not in data
        assert b"Subject: quarterly report\r\nMessage-ID: <orig-1@example.com>\r\n" in data
        assert "headers are attached" in text_of(msg)

    def test_large_original_is_truncated_to_headers(self) -> None:
        big = ORIGINAL + b"x" * 200 + b"\r\n"
        data = build(original=big, max_returned_size=len(big) - 1)
        msg = parse(data)
        assert parts(msg)[2].get_content_type() == "text/rfc822-headers"
        assert b"x" * 200 not in data
        text = " ".join(text_of(msg).split())
        assert f"The message ({len(big)} bytes) is larger than the {len(big) - 1} bytes" in text
        assert parts(parse(build(original=big, max_returned_size=len(big))))[
            2
        ].get_content_type() == ("message/rfc822")

    def test_oversized_header_block_is_cut_at_a_line(self) -> None:
        original = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 50) for i in range(100)) + b"\r\nb"
        data = build(envelope(ret=Ret.HDRS), original=original, max_returned_size=1000)
        returned = data.split(b"Content-Type: text/rfc822-headers\r\n", 1)[1]
        body = returned.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]
        assert 0 < len(body) <= 1000
        assert body.endswith(b"y" * 50 + b"\r\n")  # whole lines only
        assert "header section was shortened" in " ".join(text_of(parse(data)).split())

    def test_missing_original_omits_the_third_part(self) -> None:
        msg = parse(build(original=b""))
        assert [p.get_content_type() for p in parts(msg)] == [
            "text/plain",
            "message/delivery-status",
        ]
        assert "no longer available" in text_of(msg)

    def test_8bit_original_is_declared(self) -> None:
        original = "Subject: café\r\n\r\nnaïve body\r\n".encode()
        data = build(original=original)
        assert b"Content-Transfer-Encoding: 8bit\r\n\r\nThis is a MIME" in data
        assert b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n" in data

    def test_boundary_avoids_the_content(self) -> None:
        first = build()
        boundary = parse(first).get_boundary()
        assert boundary
        tricky = ORIGINAL + f"--{boundary}\r\nnot a part\r\n--{boundary}--\r\n".encode()
        msg = parse(build(original=tricky))
        assert msg.get_boundary() != boundary
        assert len(parts(msg)) == 3

    def test_deterministic(self) -> None:
        """Same input, same octets (a notice rebuilt after a restart is identical); and
        the octets do depend on the input."""
        first = build()
        assert build() == first
        assert build(original=ORIGINAL + b"more\r\n") != first
        assert parse(first).get_boundary() in first.decode("ascii", "replace")


class TestHostileAndLongText:
    def test_diagnostic_cannot_inject_fields(self) -> None:
        rcpt = failed(diagnostic="550 no\r\nAction: delivered\r\n\r\nX-Evil: 1")
        data = build(envelope(), [rcpt])
        per_rcpt = status_blocks(parse(data))[1]
        assert per_rcpt["Action"] == "failed"
        assert per_rcpt["X-Evil"] is None
        assert per_rcpt["Diagnostic-Code"] == "smtp; 550 no Action: delivered X-Evil: 1"

    def test_envid_and_orcpt_with_controls_are_sanitised(self) -> None:
        env = envelope(envid="id\r\nX-Evil: 1")
        rcpt = failed(orcpt="rfc822;a@b\r\nX-Evil: 2")
        per_message, per_rcpt = status_blocks(parse(build(env, [rcpt])))
        assert per_message["Original-Envelope-Id"] == "id X-Evil: 1"
        assert per_rcpt["Original-Recipient"] == "rfc822;a@b X-Evil: 2"
        assert per_message["X-Evil"] is None and per_rcpt["X-Evil"] is None

    def test_long_fields_are_folded(self) -> None:
        diagnostic = "550 5.7.1 " + " ".join(f"word{i}" for i in range(120))
        data = build(envelope(), [failed(diagnostic=diagnostic)])
        assert max(len(line) for line in data.split(b"\r\n")) <= 78
        per_rcpt = status_blocks(parse(data))[1]
        assert per_rcpt["Diagnostic-Code"] == f"smtp; {diagnostic}"

    def test_unbreakable_word_stays_under_the_hard_limit(self) -> None:
        data = build(envelope(), [failed(diagnostic="550 " + "z" * 2500)])
        assert max(len(line) for line in data.split(b"\r\n")) <= 998

    def test_non_ascii_diagnostic_without_smtputf8_stays_7bit(self) -> None:
        rcpt = failed(diagnostic="550 5.1.1 Empfänger unbekannt")
        data = build(envelope(), [rcpt])
        assert data.isascii()
        msg = parse(data)
        per_rcpt = status_blocks(msg)[1]
        assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 Empf\\x{E4}nger unbekannt"
        text_part = parts(msg)[0]
        assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
        assert "Empfänger unbekannt" in text_of(msg)

    def test_idn_sender_domain_becomes_an_a_label(self) -> None:
        data = build(envelope(sender="user@bücher.example"))
        assert b"\r\nTo: <user@xn--bcher-kva.example>\r\n" in data
        per_message = status_blocks(parse(data))[0]
        assert per_message["X-Outrider-Sender"] == "utf-8; user@b\\x{FC}cher.example"

    def test_non_ascii_header_is_rfc2047_encoded(self) -> None:
        encoded = _header("Subject", "Zustellung fehlgeschlagen: Grüße " + "ä" * 60, utf8=False)
        assert encoded.isascii() and "=?utf-8?" in encoded
        assert all(len(line) <= 78 for line in encoded.split("\r\n"))
        msg = parse(encoded.encode() + b"\r\n")
        assert msg["Subject"] == "Zustellung fehlgeschlagen: Grüße " + "ä" * 60
        raw = _header("Subject", "Grüße", utf8=True)
        assert raw == "Subject: Grüße\r\n"


class TestOtherActions:
    def test_delayed_notice(self) -> None:
        rcpt = FailedRecipient(
            Recipient("user@example.org"),
            "4.2.2",
            "452 4.2.2 mailbox full",
            "mx.example.org",
            last_attempt=NOW - 60,
            will_retry_until=NOW + 86_400,
        )
        data = build(envelope(), [rcpt], action="delayed")
        msg = parse(data)
        assert msg["Subject"] == "Delayed Mail (still being retried)"
        per_rcpt = status_blocks(msg)[1]
        assert per_rcpt["Action"] == "delayed"
        assert per_rcpt["Status"] == "4.2.2"
        assert per_rcpt["Last-Attempt-Date"] == "Fri, 27 Nov 2026 20:30:05 +0000"
        assert per_rcpt["Will-Retry-Until"] == "Sat, 28 Nov 2026 20:31:05 +0000"
        # RET=FULL applies to failed notices only; a delayed message is still queued.
        assert parts(msg)[2].get_content_type() == "text/rfc822-headers"
        assert b"The body of the original message." not in data
        assert "do not need to send it again" in " ".join(text_of(msg).split())

    def test_delivered_notice(self) -> None:
        rcpt = failed(status="2.0.0", diagnostic="250 2.0.0 OK queued as X")
        msg = parse(build(envelope(ret=Ret.FULL), [rcpt], action="delivered"))
        assert msg["Subject"] == "Successful Mail Delivery Report"
        assert status_blocks(msg)[1]["Action"] == "delivered"
        assert parts(msg)[2].get_content_type() == "text/rfc822-headers"

    @pytest.mark.parametrize(("action", "status"), [("failed", "5.0.0"), ("delayed", "4.0.0")])
    def test_malformed_status_falls_back_to_the_class_default(
        self, action: str, status: str
    ) -> None:
        msg = parse(build(envelope(), [failed(status="bogus")], action=action))
        assert status_blocks(msg)[1]["Status"] == status


class TestSmtputf8:
    def test_global_variant(self) -> None:
        env = envelope(sender="jürgen@bücher.example", smtputf8=True)
        rcpt = failed(
            "用户@example.net",
            diagnostic="550 5.1.1 用户不存在",
            orcpt="utf-8;用户@example.net",
        )
        original = "From: jürgen@bücher.example\r\nSubject: Grüße\r\n\r\nHallo\r\n".encode()
        data = build(env, [rcpt], original=original)
        msg = parse(data)
        assert msg.get_param("report-type") == "global-delivery-status"
        assert [p.get_content_type() for p in parts(msg)] == [
            "text/plain",
            "message/global-delivery-status",
            "message/global",
        ]
        assert "\r\nTo: <jürgen@bücher.example>\r\n".encode() in data
        per_message, per_rcpt = global_status_blocks(data)
        assert per_message["X-Outrider-Sender"] == "utf-8; jürgen@bücher.example"
        assert per_rcpt["Final-Recipient"] == "utf-8; 用户@example.net"
        assert per_rcpt["Original-Recipient"] == "utf-8;用户@example.net"
        assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 用户不存在"
        assert "<用户@example.net>" in text_of(msg)
        # raw UTF-8 in the global status part, never RFC 2047 (which a parser would hide)
        for line in (
            "X-Outrider-Sender: utf-8; jürgen@bücher.example\r\n",
            "Original-Recipient: utf-8;用户@example.net\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1 用户不存在\r\n",
        ):
            assert line.encode() in data
        assert parts(msg)[0]["Content-Transfer-Encoding"] == "8bit"
        assert attached(parts(msg)[2])["Subject"] == "Grüße"

    def test_ascii_addresses_keep_rfc822_type(self) -> None:
        blocks = global_status_blocks(build(envelope(smtputf8=True)))
        assert blocks[1]["Final-Recipient"] == "rfc822; user@example.org"

    def test_global_headers_for_hdrs(self) -> None:
        msg = parse(build(envelope(smtputf8=True, ret=Ret.HDRS)))
        assert parts(msg)[2].get_content_type() == "message/global-headers"

    def test_utf8_address_without_smtputf8_uses_xtext_form(self) -> None:
        rcpt = failed("δοκιμή+x@example.org", orcpt="utf-8;δοκιμή+x@example.org")
        data = build(envelope(), [rcpt])
        assert data.isascii()
        per_rcpt = status_blocks(parse(data))[1]
        expected = "utf-8; \\x{3B4}\\x{3BF}\\x{3BA}\\x{3B9}\\x{3BC}\\x{3AE}\\x{2B}x@example.org"
        assert per_rcpt["Final-Recipient"] == expected
        assert per_rcpt["Original-Recipient"] == expected.replace("; ", ";")

    def test_xtext_decoded_rfc822_orcpt_becomes_utf8_type(self) -> None:
        """ORCPT=rfc822;+C3+BCn+C3+AF@... decodes to a non-ASCII address, which the rfc822
        type cannot hold: RFC 6533 wants the utf-8 type (unitext in the global part)."""
        env = envelope(sender="s@example.org", smtputf8=True)
        rcpt = failed("ünï@example.org", orcpt="rfc822;ünï@example.org")
        per_rcpt = global_status_blocks(build(env, [rcpt]))[1]
        assert per_rcpt["Original-Recipient"] == "utf-8;ünï@example.org"
        assert per_rcpt["Final-Recipient"] == "utf-8; ünï@example.org"
        seven_bit = status_blocks(parse(build(envelope(), [rcpt])))[1]
        assert seven_bit["Original-Recipient"] == "utf-8;\\x{FC}n\\x{EF}@example.org"

    def test_utf8_addr_xtext_orcpt_is_decoded_in_the_global_part(self) -> None:
        env = envelope(smtputf8=True)
        rcpt = failed("jöran@example.org", orcpt="utf-8;j\\x{F6}ran@example.org")
        per_rcpt = global_status_blocks(build(env, [rcpt]))[1]
        assert per_rcpt["Original-Recipient"] == "utf-8;jöran@example.org"
        seven_bit = status_blocks(parse(build(envelope(), [rcpt])))[1]
        assert seven_bit["Original-Recipient"] == "utf-8;j\\x{F6}ran@example.org"

    def test_ascii_orcpt_and_other_types_kept(self) -> None:
        env = envelope(smtputf8=True)
        rcpt = failed("a@example.org", orcpt="x400;/C=US/")
        assert global_status_blocks(build(env, [rcpt]))[1]["Original-Recipient"] == "x400;/C=US/"


class TestMutationSurvivors:
    """Behaviour a mutation run showed no test pinned (issue 15)."""

    def test_oversized_headers_are_cut_after_the_last_line_that_fits(self) -> None:
        lines = [f"X-Filler-{i:03d}: {'v' * 40}\r\n".encode() for i in range(60)]
        head = b"".join(lines)
        original = head + b"\r\n" + b"body\r\n" * 10
        data = build(original=original, max_returned_size=1000, original_size=50_000)
        returned = parts(parse(data))[2]
        assert returned.get_content_type() == "text/rfc822-headers"
        text = data.split(b"Content-Type: text/rfc822-headers\r\n", 1)[1]
        body = text.split(b"\r\n\r\n", 1)[1]
        kept = body[: body.index(b"\r\n--")]
        whole_lines = 1000 // len(lines[0])
        assert kept == b"".join(lines[:whole_lines])
        note = " ".join(str(parts(parse(data))[0].get_content()).split())
        assert f"shortened to {len(kept)} bytes" in note

    def test_content_transfer_encodings(self) -> None:
        ascii_notice = build()
        assert ascii_notice.count(b"Content-Transfer-Encoding: 7bit\r\n") == 4
        assert b"8bit" not in ascii_notice
        eight_bit = ORIGINAL.replace(b"quarterly report", "caf\u00e9".encode())
        data = build(original=eight_bit)
        assert data.count(b"Content-Transfer-Encoding: 8bit\r\n") == 2  # outer and returned
        accented = failed(diagnostic="550 5.1.1 bo\u00eete pleine")
        qp = build(rcpts=[accented])
        assert b"Content-Transfer-Encoding: quoted-printable\r\n" in qp
        assert b"8bit" not in qp  # the report escapes it: everything else stays 7bit

    def test_a_delayed_notice_never_returns_the_message(self) -> None:
        later = NOW + 86400
        delayed = FailedRecipient(
            Recipient("user@example.org"), "4.4.1", "421 busy", "mx.example.org", None, later
        )
        data = build(rcpts=[delayed], action="delayed")
        msg = parse(data)
        assert parts(msg)[2].get_content_type() == "text/rfc822-headers"
        text = str(parts(msg)[0].get_content())
        assert "A copy of the message is attached" not in text
        assert "The message's headers are attached." in " ".join(text.split())
        retry = "will be retried until Sat, 28 Nov 2026 20:31:05 +0000"
        assert retry in " ".join(text.split())
        assert status_blocks(msg)[1]["Will-Retry-Until"] == "Sat, 28 Nov 2026 20:31:05 +0000"

    def test_a_failed_notice_has_no_retry_until(self) -> None:
        """Will-Retry-Until belongs to "delayed" notices only, even if the time is known."""
        item = FailedRecipient(
            Recipient("user@example.org"), "5.1.1", "550 gone", "mx.example.org", None, NOW + 60
        )
        msg = parse(build(rcpts=[item]))
        assert "Will-Retry-Until" not in status_blocks(msg)[1]
        assert "retried until" not in " ".join(str(parts(msg)[0].get_content()).split())

    def test_folded_header_lines_start_with_whitespace(self) -> None:
        value = " ".join(f"word{i}" for i in range(60)) + " " + "x" * 1000
        folded = _header("Subject", value, False)
        lines = folded.split("\r\n")
        assert lines[-1] == ""
        assert lines[0].startswith("Subject: word0")
        assert all(line.startswith(" ") for line in lines[1:-1])
        assert all(len(line) <= 998 for line in lines)
        words = "".join(lines).split()  # unfolded: the CRLFs removed
        assert words[:61] == ["Subject:", *value.split()[:60]]
        assert "".join(words[61:]) == "x" * 1000  # the long word split, nothing lost

    def test_boundary_skips_every_taken_serial(self) -> None:
        base = parse(build()).get_boundary()
        assert base
        tricky = ORIGINAL + f"--{base}\r\n--{base}.1\r\n".encode()
        assert parse(build(original=tricky)).get_boundary() == f"{base}.2"


def returned_part(data: bytes) -> bytes:
    """The raw content of the third part (the returned message or its headers)."""
    boundary = parse(data).get_boundary()
    assert boundary
    third = data.split(f"\r\n--{boundary}\r\n".encode())[3]
    return third.split(b"\r\n\r\n", 1)[1].split(f"\r\n--{boundary}--".encode())[0]


def text_lines(data: bytes) -> list[str]:
    return text_of(parse(data)).splitlines()


class TestBoundary:
    def test_the_boundary_names_the_queue_id_the_time_and_the_host(self) -> None:
        assert parse(build()).get_boundary() == "4Q7xYz.1795811465/mta.example.net"

    def test_a_long_boundary_base_is_cut_at_60_characters(self) -> None:
        host = "relay-" + "x" * 60 + ".example.net"
        data = build_dsn(envelope(), [failed()], ORIGINAL, reporting_mta=host, now=NOW)
        assert parse(data).get_boundary() == f"4Q7xYz.1795811465/{host}"[:60]

    def test_the_first_free_serial_is_taken(self) -> None:
        base = parse(build()).get_boundary()
        tricky = ORIGINAL + f"--{base}\r\n".encode()
        assert parse(build(original=tricky)).get_boundary() == f"{base}.1"


class TestReportingHost:
    def test_a_host_that_is_not_a_domain_is_kept_as_given_when_ascii(self) -> None:
        data = build_dsn(envelope(), [failed()], ORIGINAL, reporting_mta="relay+1", now=NOW)
        msg = parse(data)
        assert status_blocks(msg)[0]["Reporting-MTA"] == "dns; relay+1"
        assert "This is the mail delivery system at relay+1." in text_of(msg)

    def test_a_non_ascii_host_that_is_not_a_domain_is_hex_escaped(self) -> None:
        data = build_dsn(envelope(), [failed()], ORIGINAL, reporting_mta="b\u00fc cher", now=NOW)
        assert data.isascii()
        assert status_blocks(parse(data))[0]["Reporting-MTA"] == "dns; b\\x{FC}\\x{20}cher"

    def test_an_idn_host_is_written_as_its_a_label(self) -> None:
        data = build_dsn(
            envelope(), [failed()], ORIGINAL, reporting_mta="b\u00fccher.example", now=NOW
        )
        assert status_blocks(parse(data))[0]["Reporting-MTA"] == "dns; xn--bcher-kva.example"


class TestUtf8AddrDecode:
    @pytest.mark.parametrize(
        ("escape", "char"),
        [
            ("\\x{20}", " "),
            ("\\x{7E}", "~"),
            ("\\x{80}", "\x80"),
            ("\\x{D7FF}", "\ud7ff"),
            ("\\x{E000}", "\ue000"),
            ("\\x{10FFFF}", "\U0010ffff"),
        ],
    )
    def test_an_escape_of_a_character_is_decoded(self, escape: str, char: str) -> None:
        assert utf8_addr_decode(f"a{escape}b@example.org") == f"a{char}b@example.org"

    @pytest.mark.parametrize(
        "escape", ["\\x{00}", "\\x{1F}", "\\x{7F}", "\\x{D800}", "\\x{DFFF}", "\\x{110000}"]
    )
    def test_an_escape_that_is_no_character_is_kept_as_written(self, escape: str) -> None:
        """Controls, surrogates and code points past U+10FFFF are no address characters."""
        assert utf8_addr_decode(f"a{escape}b@example.org") == f"a{escape}b@example.org"


class TestFieldEdges:
    def test_the_global_status_part_holds_raw_utf8_never_rfc_2047(self) -> None:
        env = envelope(smtputf8=True, envid="\u00fcmlaut-1")
        rcpt = failed("\u7528\u6237@example.net", remote_mta="mx.b\u00fccher.example")
        data = build(env, [rcpt])
        report = data.split(b"Content-Type: message/global-delivery-status\r\n", 1)[1]
        report = report.split(b"\r\n--", 1)[0]
        assert report.startswith(b"Content-Transfer-Encoding: 8bit\r\n\r\n")
        assert b"=?" not in report
        for line in (
            "Original-Envelope-Id: \u00fcmlaut-1\r\n",
            "Final-Recipient: utf-8; \u7528\u6237@example.net\r\n",
            "Remote-MTA: dns; mx.b\u00fccher.example\r\n",
        ):
            assert line.encode() in report

    def test_an_orcpt_without_a_type_is_an_rfc822_address(self) -> None:
        rcpt = failed(orcpt="user@example.org")
        assert status_blocks(parse(build(rcpts=[rcpt])))[1]["Original-Recipient"] == (
            "rfc822;user@example.org"
        )

    def test_an_orcpt_address_may_hold_a_semicolon(self) -> None:
        rcpt = failed(orcpt='rfc822;"a;b"@example.org')
        assert status_blocks(parse(build(rcpts=[rcpt])))[1]["Original-Recipient"] == (
            'rfc822;"a;b"@example.org'
        )
        # the type ends at the first ";": a non-ASCII address after it gets the utf-8 type
        utf8 = failed(orcpt='rfc822;"j\u00f6;rg"@example.org')
        per_rcpt = global_status_blocks(build(envelope(smtputf8=True), [utf8]))[1]
        assert per_rcpt["Original-Recipient"] == 'utf-8;"j\u00f6;rg"@example.org'

    def test_the_to_address_a_labels_the_domain_after_the_last_at(self) -> None:
        env = envelope(sender='"a@b"@b\u00fccher.example')
        assert b'\r\nTo: <"a@b"@xn--bcher-kva.example>\r\n' in build(env)

    def test_a_to_address_without_a_domain_is_kept_as_given(self) -> None:
        env = envelope(sender="p\u00f6stmaster")
        assert "\r\nTo: <p\u00f6stmaster>\r\n".encode() in build(env)


class TestHeaderFolding:
    def test_a_line_that_fits_is_kept_as_given(self) -> None:
        value = "a  b " + "c" * (78 - len("X-Test: a  b "))
        assert len(f"X-Test: {value}") == 78
        assert _header("X-Test", value, False) == f"X-Test: {value}\r\n"

    def test_folding_fills_a_line_up_to_78_characters(self) -> None:
        value = f"{'a' * 40} {'b' * 29} {'c' * 20}"
        folded = _header("X-Test", value, False)
        assert folded == f"X-Test: {'a' * 40} {'b' * 29}\r\n {'c' * 20}\r\n"
        assert len(folded.split("\r\n")[0]) == 78

    def test_a_word_of_the_longest_unsplit_length_stays_whole(self) -> None:
        word = "w" * _MAX_WORD
        assert _header("X-Test", word, False) == f"X-Test: {word}\r\n"


class TestHumanText:
    def test_the_text_wraps_at_76_columns(self) -> None:
        lines = text_lines(build())
        assert max(len(line) for line in lines) == 74  # the intro's first line
        assert lines[2].startswith("Your message could not be delivered") and len(lines[2]) > 70

    def test_the_text_part_reads_as_a_letter_with_one_block_per_recipient(self) -> None:
        second = failed("other@example.org", diagnostic="550 5.2.2 mailbox full", remote_mta="")
        raw = build(rcpts=[failed(), second])
        text = raw.split(b"Content-Transfer-Encoding: 7bit\r\n\r\n")[2].split(b"\r\n--")[0]
        assert text.decode() == (
            "This is the mail delivery system at mta.example.net.\r\n"
            "\r\n"
            "Your message could not be delivered to one or more recipients. The reasons\r\n"
            "are given below.\r\n"
            "\r\n"
            "A copy of the message is attached.\r\n"
            "\r\n"
            "<user@example.org>\r\n"
            "    mx.example.org said: 550 5.1.1 <user@example.org>: no such user\r\n"
            "\r\n"
            "<other@example.org>\r\n"
            "    550 5.2.2 mailbox full\r\n"
            "\r\n"
            "Queue ID: 4Q7xYz\r\n"
        )

    def test_a_long_reason_wraps_indented_and_never_at_a_hyphen(self) -> None:
        host = "-".join(["mx"] * 20) + ".example.org"  # fits a line, not what is left
        rcpt = failed(diagnostic=f"550 5.1.1 rejected by policy at {host} for this sender")
        lines = text_lines(build(rcpts=[rcpt]))
        at = lines.index("<user@example.org>")
        reason = lines[at + 1 : lines.index("Queue ID: 4Q7xYz")]
        reason = [line for line in reason if line]
        assert len(reason) > 1
        assert all(line.startswith("    ") and len(line) <= 76 for line in reason)
        assert any(line.strip() == host for line in reason)  # the hyphenated word whole

    def test_a_delayed_reason_keeps_the_diagnostic_before_the_retry_time(self) -> None:
        delayed = FailedRecipient(
            Recipient("user@example.org"), "4.4.1", "421 busy", "mx.example.org", None, NOW
        )
        text = " ".join(text_of(parse(build(rcpts=[delayed], action="delayed"))).split())
        assert (
            "mx.example.org said: 421 busy (will be retried until Fri, 27 Nov 2026 20:31:05 +0000)"
            in text
        )

    def test_a_quoted_printable_text_keeps_its_line_breaks(self) -> None:
        """RFC 2045 6.7: a text's line breaks are CRLFs in the encoding, not =0D=0A."""
        data = build(rcpts=[failed(diagnostic="550 5.1.1 bo\u00eete pleine")])
        assert b"Content-Transfer-Encoding: quoted-printable\r\n" in data
        assert b"=0D" not in data and b"=0A" not in data
        assert "bo\u00eete pleine" in text_of(parse(data))


class TestReturnedPart:
    def test_a_returned_message_and_a_header_section_are_described(self) -> None:
        assert b"Content-Description: Undelivered message\r\n" in build()
        headers_only = build(envelope(ret=Ret.HDRS))
        assert b"Content-Description: Message headers\r\n" in headers_only
        assert b"Undelivered message" not in headers_only

    def test_a_header_section_of_exactly_the_limit_is_not_shortened(self) -> None:
        headers = ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"
        data = build(envelope(ret=Ret.HDRS), max_returned_size=len(headers))
        assert returned_part(data) == headers
        assert "shortened" not in text_of(parse(data))

    def test_a_first_header_line_longer_than_the_limit_leaves_no_headers(self) -> None:
        original = b"X-Long: " + b"v" * 200 + b"\r\nX-Next: 1\r\n\r\nbody\r\n"
        data = build(envelope(ret=Ret.HDRS), original=original, max_returned_size=100)
        assert returned_part(data) == b""
        assert "shortened to 0 bytes" in " ".join(text_of(parse(data)).split())
