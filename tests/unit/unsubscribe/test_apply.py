"""apply_unsubscribe (shared by the one-click POST and the mailto consumer) and the pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from outrider.events.types import Event, Feedback
from outrider.suppression.store import SuppressionStore
from outrider.unsubscribe.apply import TokenError, apply_unsubscribe
from outrider.unsubscribe.page import confirm_page, done_page, invalid_page, is_one_click
from outrider.unsubscribe.token import Unsubscribe, make_token, today

SECRET = b"s" * 32
NOW = 1_780_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> SuppressionStore:
    return SuppressionStore(tmp_path / "suppression.db", clock=lambda: NOW)


def test_suppresses_for_the_scope_and_publishes(store: SuppressionStore) -> None:
    events: list[Event] = []
    token = make_token(
        SECRET, Unsubscribe("Ann@Example.org", "news.example.com", "spring", today(NOW))
    )
    what = apply_unsubscribe(
        token, secret=SECRET, store=store, publish=events.append, now=NOW, source="one-click"
    )
    assert what.recipient == "Ann@Example.org"
    [entry] = store.get("ann@example.org")
    assert (entry.scope, entry.reason, entry.source) == (
        "news.example.com",
        "unsubscribe",
        "one-click",
    )
    assert events == [
        Feedback(
            at=NOW,
            kind="unsubscribed",
            recipient="Ann@Example.org",
            sender_domain="news.example.com",
            job_id="spring",
            detail="one-click",
        )
    ]
    assert store.check(["ann@example.org"], "news.example.com")
    assert not store.check(["ann@example.org"], "other.test")
    # idempotent: still one entry
    apply_unsubscribe(
        token, secret=SECRET, store=store, publish=events.append, now=NOW, source="mailto"
    )
    assert len(store.get("ann@example.org")) == 1 and len(events) == 2


def test_forged_or_expired_tokens_change_nothing(store: SuppressionStore) -> None:
    events: list[Event] = []
    good = make_token(SECRET, Unsubscribe("a@example.org", "news.example.com", "", today(NOW) - 40))
    forged = make_token(b"x" * 32, Unsubscribe("a@example.org", "news.example.com"))
    for token, kwargs in (
        (forged, {}),
        ("nonsense", {}),
        (good[:-2] + "AA", {}),
        (good, {"max_age": 30 * 86400.0}),
    ):
        with pytest.raises(TokenError):
            apply_unsubscribe(
                token,
                secret=SECRET,
                store=store,
                publish=events.append,
                now=NOW,
                source="one-click",
                **kwargs,  # type: ignore[arg-type]
            )
    assert events == [] and store.count() == 0
    apply_unsubscribe(good, secret=SECRET, store=store, publish=events.append, now=NOW, source="x")
    assert store.count() == 1


def test_pages_escape_and_post_to_themselves() -> None:
    what = Unsubscribe('<b>"x"@example.org', "news.example.com")
    page = confirm_page(what, "Sent by <News>")
    assert "&lt;b&gt;&quot;x&quot;@example.org" in page and "<b>" not in page
    assert 'method="post" action=""' in page
    assert 'name="List-Unsubscribe" value="One-Click"' in page
    assert "Sent by &lt;News&gt;" in page
    assert "news.example.com" in done_page(what)
    assert "not valid" in invalid_page()
    assert is_one_click({"List-Unsubscribe": "One-Click"})
    assert not is_one_click({}) and not is_one_click({"List-Unsubscribe": "yes"})
