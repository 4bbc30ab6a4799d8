"""SMTP replies: the class of a code, and the wire form of one- and multi-line replies."""

from __future__ import annotations

import pytest

from outrider.smtp import replies
from outrider.smtp.replies import Reply


@pytest.mark.parametrize(
    ("code", "positive", "transient", "permanent"),
    [
        (199, False, False, False),
        (200, True, False, False),
        (250, True, False, False),
        (354, True, False, False),
        (399, True, False, False),
        (400, False, True, False),
        (421, False, True, False),
        (499, False, True, False),
        (500, False, False, True),
        (554, False, False, True),
    ],
)
def test_reply_class_follows_the_first_digit(
    code: int, positive: bool, transient: bool, permanent: bool
) -> None:
    """2xx and 3xx go on, 4xx is "try again later", 5xx is final (RFC 5321 4.2.1)."""
    reply = Reply(code, "", "x")
    assert (reply.is_positive, reply.is_transient, reply.is_permanent) == (
        positive,
        transient,
        permanent,
    )


def test_one_line_reply_on_the_wire() -> None:
    assert Reply(250, "2.0.0", "OK").to_bytes() == b"250 2.0.0 OK\r\n"
    assert Reply(220, "", "mx.test ESMTP").to_bytes() == b"220 mx.test ESMTP\r\n"


def test_multi_line_reply_uses_dash_continuations_and_repeats_the_enhanced_code() -> None:
    reply = Reply(550, "5.7.1", "first\nsecond\nlast")
    assert reply.to_bytes() == b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 last\r\n"
    assert reply.lines() == ["first", "second", "last"]


def test_ehlo_style_reply_without_enhanced_code() -> None:
    assert Reply(250, "", "mx.test\nPIPELINING\nSIZE 10").to_bytes() == (
        b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
    )


def test_empty_text_is_the_bare_code() -> None:
    """No trailing space after the code or the enhanced code."""
    assert Reply(421, "", "").lines() == [""]
    assert Reply(421, "", "").to_bytes() == b"421\r\n"
    assert Reply(421, "4.3.0", "").to_bytes() == b"421 4.3.0\r\n"
    assert Reply(250, "", "a\n").to_bytes() == b"250-a\r\n250\r\n"


def test_wire_form_is_utf8_and_never_raises() -> None:
    assert Reply(550, "5.1.1", "unknown user \u00e9").to_bytes() == (
        b"550 5.1.1 unknown user \xc3\xa9\r\n"
    )
    assert Reply(550, "5.1.1", "bad \udcff").to_bytes() == b"550 5.1.1 bad ?\r\n"


def test_str_is_one_line() -> None:
    assert str(Reply(250, "", "mx.test\nPIPELINING")) == "250 mx.test; PIPELINING"
    assert str(Reply(421, "", "")) == "421"


@pytest.mark.parametrize(
    ("reply", "code", "enhanced"),
    [
        (replies.OK, 250, "2.0.0"),
        (replies.BAD_SEQUENCE, 503, "5.5.1"),
        (replies.SYNTAX_ERROR, 501, "5.5.4"),
        (replies.UNRECOGNISED, 500, "5.5.2"),
        (replies.LINE_TOO_LONG, 500, "5.5.2"),
        (replies.BARE_LINE_ENDING, 500, "5.5.2"),
        (replies.TOO_MANY_RECIPIENTS, 452, "4.5.3"),
        (replies.MESSAGE_TOO_BIG, 552, "5.3.4"),
        (replies.RELAY_DENIED, 554, "5.7.1"),
        (replies.LOCAL_ERROR, 451, "4.3.0"),
        (replies.SHUTTING_DOWN, 421, "4.3.2"),
    ],
)
def test_shared_replies_codes(reply: Reply, code: int, enhanced: str) -> None:
    """The codes other modules and peers act on (RFC 5321 4.2.2, RFC 3463)."""
    assert (reply.code, reply.enhanced) == (code, enhanced)
