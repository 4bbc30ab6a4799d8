from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outrider.unsubscribe.token import (
    DAY,
    TokenError,
    Unsubscribe,
    make_token,
    read_token,
    today,
)

SECRET = b"0123456789abcdef0123456789abcdef"


def test_round_trip() -> None:
    what = Unsubscribe("ann@example.org", "news.example.com", "spring", 20000)
    token = make_token(SECRET, what)
    assert read_token(SECRET, token) == what
    assert "/" not in token and "+" not in token and "=" not in token


@given(
    st.text(min_size=1).filter(lambda s: "\n" not in s),
    st.text().filter(lambda s: "\n" not in s),
    st.text().filter(lambda s: "\n" not in s),
    st.integers(0, 10**6),
)
def test_round_trip_any_text(rcpt: str, scope: str, job: str, day: int) -> None:
    what = Unsubscribe(rcpt, scope, job, day)
    assert read_token(SECRET, make_token(SECRET, what)) == what


def test_other_secret_refused() -> None:
    token = make_token(SECRET, Unsubscribe("ann@example.org", "d.example"))
    with pytest.raises(TokenError, match="signature"):
        read_token(b"another secret, just as long....", token)


def test_tampered_payload_refused() -> None:
    token = make_token(SECRET, Unsubscribe("ann@example.org", "d.example"))
    other = make_token(SECRET, Unsubscribe("bob@example.org", "d.example"))
    forged = other.split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(TokenError):
        read_token(SECRET, forged)


@pytest.mark.parametrize("bad", ["", ".", "abc", "abc.", ".abc", "a.b.c", "!!!.???"])
def test_malformed(bad: str) -> None:
    with pytest.raises(TokenError):
        read_token(SECRET, bad)


def test_max_age() -> None:
    now = 100 * DAY + 5
    token = make_token(SECRET, Unsubscribe("a@b.example", "", "", today(now)))
    fresh = read_token(SECRET, token, now=now + 29 * DAY, max_age=30 * DAY)
    assert fresh.recipient == "a@b.example"
    with pytest.raises(TokenError, match="expired"):
        read_token(SECRET, token, now=now + 32 * DAY, max_age=30 * DAY)


def test_newline_refused_when_making() -> None:
    with pytest.raises(ValueError):
        make_token(SECRET, Unsubscribe("a\n@b", ""))
