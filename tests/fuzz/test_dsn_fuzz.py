"""Fuzz the status and DSN path: enhanced status codes read from remote replies, their
reclassification by reply patterns, and the RFC 3464 notices built from them.

Remote replies and client-given envelope fields (addresses, ORCPT, ENVID) end up in a
DSN that other mail systems parse, so whatever they hold, the notice must parse as a
multipart/report with exactly the fields Outrider writes, ASCII status codes, CRLF lines
of legal length, and the original attached byte for byte.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import Message

from hypothesis import example, given
from hypothesis import strategies as st

from outrider.dsn.builder import FailedRecipient, build_dsn
from outrider.message.envelope import Envelope, Notify, Recipient, Ret
from outrider.policy.outcome import Scope, Verdict, classify_reply, status_from_text, status_of
from outrider.policy.patterns import Action, Match, classify_with_patterns
from outrider.smtp.client import ReplyParser, SmtpProtocolError
from outrider.smtp.replies import Reply
from tests.fuzz.harness import fuzz_target
from tests.fuzz.seeds import MESSAGE_SEEDS, REPLY_SEEDS

STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
DIGITS = "0123456789\u0661\u0662\u00b2\u0969"  # ASCII, Arabic-Indic, superscript, Devanagari
status_like = st.tuples(
    st.sampled_from("2345"), st.text(DIGITS, min_size=1, max_size=3), st.text(DIGITS, max_size=4)
).map(".".join)
reply_lines = st.tuples(
    st.sampled_from([b"250", b"421", b"450", b"550", b"554", b"354", b"599"]),
    st.sampled_from([b" ", b"-", b""]),
    st.one_of(status_like.map(lambda s: s.encode("utf-8")), st.just(b"")),
    st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")),
).map(lambda t: b"%s%s%s %s\r\n" % t)
wire_replies = st.one_of(
    st.lists(reply_lines, min_size=1, max_size=3).map(b"".join), st.sampled_from(REPLY_SEEDS)
)


def parse_replies(data: bytes) -> list[Reply]:
    try:
        return ReplyParser().feed(data)
    except SmtpProtocolError:
        return []


@given(wire_replies, st.lists(st.sampled_from([Action.BOUNCE, Action.DEFER]), max_size=2))
@example(b"550 5.\xd9\xa1.\xd9\xa1 no such user\r\n", [])
@fuzz_target(weight=3.5)
def test_status_codes_stay_ascii_and_agree_with_the_diagnostic(
    data: bytes, actions: list[Action]
) -> None:
    for reply in parse_replies(data):
        outcome = classify_reply(reply, scope=Scope.RECIPIENT, remote_mta="mx.test")
        assert STATUS.fullmatch(outcome.status), outcome.status
        if reply.code // 100 in (2, 4, 5):
            assert outcome.status[0] == str(reply.code)[0]
        found = status_from_text(outcome.diagnostic, "none")
        assert found == "none" or STATUS.fullmatch(found), found
        matches = [Match(action, "rule", outcome.diagnostic) for action in actions]
        final = classify_with_patterns(outcome, matches)
        assert STATUS.fullmatch(final.status), final.status
        if final != outcome:  # reclassified: class, status and diagnostic all agree
            klass = {Verdict.PERMANENT: "5", Verdict.TRANSIENT: "4"}[final.verdict]
            assert final.status[0] == klass and final.diagnostic.startswith(("550 ", "451 "))
            assert status_from_text(final.diagnostic, "none") == final.status
        assert status_of(reply) == outcome.status


# --- notices ------------------------------------------------------------------------

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "550 5.1.1 <u@d.test>: user unknown",
            "a\r\nBcc: injected@evil.test",
            "\r\n\r\n--boundary--",
            "x" * 1200,
            "\u00fcml\u00e4ut \U0001f600",
            "\x00\x1b[31m",
        ]
    ),
)
addresses = st.one_of(
    st.sampled_from(
        [
            "u@d.test",
            "\u00fc@b\u00fccher.test",
            "a@[192.0.2.1]",
            "s@d.test\r\nBcc: x@evil.test",
            "<<s@d.test>>",
            "postmaster",
        ]
    ),
    st.text(min_size=1, max_size=30),
)
STATUS_SAMPLES = ["5.1.1", "4.4.1", "2.0.0", "5.7.28", "9.9.9", "", "5.\u0661.\u0661", "x"]
failed_recipients = st.builds(
    FailedRecipient,
    st.builds(
        Recipient,
        addresses,
        orcpt=st.one_of(st.none(), texts, addresses.map(lambda a: "rfc822;" + a)),
        notify=st.sampled_from([None, Notify.NEVER, Notify.SUCCESS | Notify.FAILURE]),
    ),
    status=st.one_of(st.sampled_from(STATUS_SAMPLES), status_like),
    diagnostic=texts,
    remote_mta=st.one_of(st.just(""), texts),
    last_attempt=st.one_of(st.none(), st.floats(0, 4e9)),
    will_retry_until=st.one_of(st.none(), st.floats(0, 4e9)),
)
originals = st.one_of(
    st.sampled_from(MESSAGE_SEEDS),
    st.sampled_from([b"", b"Subject: x\r\n\r\nbody\r\n", b"no header block at all\r\n"]),
    st.binary(max_size=300),
)
REPORT_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "auto-submitted",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}
MESSAGE_FIELDS = {
    "reporting-mta",
    "x-outrider-queue-id",
    "x-outrider-sender",
    "original-envelope-id",
    "arrival-date",
}
RECIPIENT_FIELDS = {
    "original-recipient",
    "final-recipient",
    "action",
    "status",
    "remote-mta",
    "diagnostic-code",
    "last-attempt-date",
    "will-retry-until",
}


def own_lines(dsn: bytes) -> list[bytes]:
    """The notice's lines, without the content of the returned message or headers (the
    optional third part, whatever it holds)."""
    boundary = email.message_from_bytes(dsn, policy=email.policy.compat32).get_boundary()
    delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
    closing = f"\r\n--{boundary}--\r\n".encode("ascii")
    assert dsn.endswith(closing)
    body = dsn[: -len(closing)]
    if body.count(delimiter) == 3:  # a third part: keep its header block only
        last = body.rindex(delimiter) + len(delimiter)
        body = body[: body.index(b"\r\n\r\n", last) + 4]
    return body.split(b"\r\n")


@given(
    st.builds(
        Envelope,
        queue_id=st.sampled_from(["01JQUEUEID", "Q-1", "x" * 80]),
        sender=addresses.filter(lambda s: s.strip() not in ("", "<>")),
        recipients=st.just([]),
        received_at=st.floats(0, 4e9),
        ret=st.sampled_from([None, Ret.FULL, Ret.HDRS]),
        envid=st.one_of(st.none(), texts),
        smtputf8=st.booleans(),
    ),
    st.lists(failed_recipients, min_size=1, max_size=3),
    originals,
    st.sampled_from(
        ["mta.example.test", "b\u00fccher.test", "MTA.Example.TEST."]
    ),  # config-checked
    st.sampled_from(["failed", "delayed", "delivered", "relayed", "expanded"]),
    st.sampled_from([0, 50, 100_000]),
    st.floats(0, 4e9),
)
@fuzz_target(weight=0.4)
def test_notices_parse_with_only_the_fields_outrider_writes(
    envelope: Envelope,
    recipients: list[FailedRecipient],
    original: bytes,
    reporting_mta: str,
    action: str,
    max_returned: int,
    now: float,
) -> None:
    dsn = build_dsn(
        envelope,
        recipients,
        original,
        reporting_mta=reporting_mta,
        now=now,
        action=action,
        max_returned_size=max_returned,
    )
    for line in own_lines(dsn):
        assert b"\r" not in line and b"\n" not in line and len(line) <= 998, line[:100]
    msg = email.message_from_bytes(dsn, policy=email.policy.compat32)
    assert set(k.lower() for k in msg) == REPORT_HEADERS
    assert msg.get_content_type() == "multipart/report" and not msg.defects
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) in (2, 3)
    report = parts[1]
    assert report.get_content_type() in (
        "message/delivery-status",
        "message/global-delivery-status",
    )
    blocks = report.get_payload()
    if report.get_content_type() == "message/delivery-status":
        assert isinstance(blocks, list) and len(blocks) == 1 + len(recipients)
        check_blocks(blocks, action)
    if len(parts) == 3 and parts[2].get_content_type() in ("message/rfc822", "message/global"):
        closing = f"\r\n--{msg.get_boundary()}--\r\n".encode("ascii")
        assert dsn.endswith(b"\r\n\r\n" + original + closing)  # returned byte for byte


def check_blocks(blocks: list[Message], action: str) -> None:
    assert set(k.lower() for k in blocks[0]) <= MESSAGE_FIELDS
    for block in blocks[1:]:
        fields = {k.lower() for k in block}
        assert fields <= RECIPIENT_FIELDS and {"final-recipient", "action", "status"} <= fields
        assert block["Action"] == action
        assert STATUS.fullmatch(str(block["Status"])), block["Status"]
