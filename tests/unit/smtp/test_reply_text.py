"""Multi-line replies as one line of text (dsnDiag, events, DSNs, the daemon log)."""

from __future__ import annotations

from outrider.policy.outcome import Scope, classify_reply
from outrider.smtp.client import ReplyParser
from outrider.smtp.replies import Reply, one_line


def parse(wire: bytes) -> Reply:
    parser = ReplyParser()
    replies = parser.feed(wire)
    assert len(replies) == 1
    return replies[0]


def test_exim_bdat_last_reply_keeps_both_lines() -> None:
    """Exim 4.96 answers BDAT LAST with two lines, the first without an enhanced code."""
    reply = parse(b"250- 2062 byte chunk, total 2062\r\n250 OK id=1tQp2x-000Abc-2D\r\n")
    assert str(reply) == "250 2062 byte chunk, total 2062; OK id=1tQp2x-000Abc-2D"
    outcome = classify_reply(reply, scope=Scope.RECIPIENT)
    assert outcome.diagnostic == str(reply)


def test_enhanced_code_once_and_lines_joined() -> None:
    reply = parse(b"550-5.7.1 Message rejected\r\n550-5.7.1 \r\n550 5.7.1 see https://x.test\r\n")
    assert str(reply) == "550 5.7.1 Message rejected; see https://x.test"


def test_single_line_replies_are_unchanged() -> None:
    assert str(Reply(250, "2.0.0", "OK queued")) == "250 2.0.0 OK queued"
    assert str(Reply(220, "", "mx.test ESMTP")) == "220 mx.test ESMTP"
    assert one_line(421, "", [""]) == "421"
    assert one_line(451, "4.3.0", ["a\rb"]) == "451 4.3.0 a b"
