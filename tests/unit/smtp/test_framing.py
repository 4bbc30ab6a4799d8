"""DATA framing on bytes: where DATA ends, which lines are refused, and dot-unstuffing.

Only CRLF "." CRLF ends DATA and only CRLF ends a line (the SMTP smuggling defence); the
line-length limit counts the CRLF, as RFC 5321 4.5.3.1.6 does (1000 octets with it).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outrider.smtp.framing import (
    TERMINATOR_TAIL,
    TextFault,
    check_lines,
    find_data_end,
    unstuff,
)


def test_terminator_tail_is_one_short_of_the_terminator() -> None:
    """Keeping 4 octets is enough to find CRLF.CRLF split across two reads, and no more."""
    assert TERMINATOR_TAIL == 4


# --- find_data_end ------------------------------------------------------------------


def test_empty_body_ends_at_a_dot_line_where_the_search_starts() -> None:
    assert find_data_end(b".\r\n", 0) == (0, 3)
    assert find_data_end(b"xx.\r\nMAIL", 2) == (2, 5)


def test_end_keeps_the_last_lines_crlf_and_resumes_after_the_terminator() -> None:
    buf = b"Subject: a\r\n\r\nbody\r\n.\r\nQUIT\r\n"
    end, resume = find_data_end(buf, 0) or (0, 0)
    assert buf[:end] == b"Subject: a\r\n\r\nbody\r\n"
    assert buf[resume:] == b"QUIT\r\n"


def test_search_starts_at_pos() -> None:
    buf = b"a\r\n.\r\nb\r\n.\r\n"
    assert find_data_end(buf, 0) == (3, 6)
    assert find_data_end(buf, 6) == (9, 12)


def test_no_terminator_yet() -> None:
    assert find_data_end(b"body\r\n", 0) is None
    assert find_data_end(b"body\r\n.\r", 0) is None
    assert find_data_end(b"", 0) is None


@pytest.mark.parametrize("fake", [b"body\n.\nmore\r\n", b"body\r\n.\nmore\r\n", b"body\n.\r\n"])
def test_bare_lf_dot_lines_do_not_end_data(fake: bytes) -> None:
    assert find_data_end(fake, 0) is None


def test_a_dot_line_not_at_the_start_is_not_an_empty_body() -> None:
    """``pos`` is at a line start; a dot line further on is only found after a CRLF."""
    assert find_data_end(b"x.\r\n", 0) is None


# --- check_lines --------------------------------------------------------------------


def test_clean_lines_pass() -> None:
    assert check_lines(b"a\r\nbb\r\n\r\n", 1000) is None
    assert check_lines(b"", 1000) is None


@pytest.mark.parametrize(
    "content",
    [b"a\nb\r\n", b"a\rb\r\n", b"a\r\r\n", b"a\n\r\n", b"\r\n\n", b"a\r\n\r"],
)
def test_bare_cr_or_lf_is_refused(content: bytes) -> None:
    assert check_lines(content, 1000) is TextFault.BARE_LINE_ENDING


def test_bare_line_ending_wins_over_line_length() -> None:
    assert check_lines(b"x" * 50 + b"\n\r\n", 20) is TextFault.BARE_LINE_ENDING


@pytest.mark.parametrize(
    ("line_octets", "fault"),
    [(19, None), (20, None), (21, TextFault.LINE_TOO_LONG)],
)
def test_line_length_counts_the_crlf(line_octets: int, fault: TextFault | None) -> None:
    """A limit of 20 allows 18 octets of text plus CRLF, and not one more."""
    line = b"x" * (line_octets - 2) + b"\r\n"
    assert check_lines(line, 20) is fault
    assert check_lines(b"short\r\n" * 5 + line + b"ok\r\n", 20) is fault


def test_line_length_counts_spaces_and_tabs() -> None:
    """Lines are split at CRLF only: words of a long line do not make it short."""
    assert check_lines(b"a b c d e f g h i j k l\r\n", 20) is TextFault.LINE_TOO_LONG
    assert check_lines(b"a\tb\tc\td\te\tf\tg\th\ti\r\n", 12) is TextFault.LINE_TOO_LONG


def test_long_total_of_short_lines_passes() -> None:
    assert check_lines(b"0123456789\r\n" * 100, 20) is None


def _check_lines_by_counting(content: bytes, max_line_length: int) -> TextFault | None:
    """check_lines as it was before it used one splitlines: every CR and LF is part of a
    CRLF, and no piece between CRLFs is longer than the limit allows."""
    crlf = content.count(b"\r\n")
    if content.count(b"\n") != crlf or content.count(b"\r") != crlf:
        return TextFault.BARE_LINE_ENDING
    if len(content) > max_line_length and (
        max(map(len, content.split(b"\r\n"))) > max_line_length - 2
    ):
        return TextFault.LINE_TOO_LONG
    return None


@given(
    st.lists(st.sampled_from([b"x", b"\r", b"\n", b"\r\n", b" ", b"xxxxx"]), max_size=40),
    st.integers(min_value=16, max_value=24),
)
def test_check_lines_matches_its_definition(pieces: list[bytes], limit: int) -> None:
    content = b"".join(pieces)
    assert check_lines(content, limit) is _check_lines_by_counting(content, limit)


# --- unstuff ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stuffed", "plain"),
    [
        (b"..\r\n", b".\r\n"),
        (b"..leading\r\n", b".leading\r\n"),
        (b"a\r\n..b\r\n...c\r\n", b"a\r\n.b\r\n..c\r\n"),
        (b"no dots\r\n", b"no dots\r\n"),
        (b"a.b\r\n", b"a.b\r\n"),
        (b"", b""),
    ],
)
def test_unstuff_drops_one_leading_dot_per_line(stuffed: bytes, plain: bytes) -> None:
    assert unstuff(stuffed) == plain


def test_unstuff_leaves_a_dot_after_a_bare_lf_alone() -> None:
    """Only a CRLF starts a line, so ``\\n.`` is data (such content is refused anyway)."""
    assert unstuff(b"a\n.b\r\n") == b"a\n.b\r\n"
