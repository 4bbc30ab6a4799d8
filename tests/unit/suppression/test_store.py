"""The suppression store: scopes, normalisation, CSV import/export, the empty fast path."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from outrider.events.types import Bounced, Delivered, MessageInfo
from outrider.message.envelope import RcptStatus, Recipient
from outrider.suppression.enforce import reply_text, was_suppressed
from outrider.suppression.store import (
    GLOBAL,
    SuppressionError,
    SuppressionStore,
    normalize_address,
    normalize_scope,
    scope_of_sender,
)
from outrider.suppression.subscriber import AutoSuppress, auto_category

T0 = 1_796_256_000.0  # 2026-12-03T00:00:00Z


@pytest.fixture
def store(tmp_path: Path) -> SuppressionStore:
    s = SuppressionStore(tmp_path / "var/suppression.db", clock=lambda: T0)
    yield s  # type: ignore[misc]
    s.close()


def test_normalisation() -> None:
    assert normalize_address(" <Ann@Example.ORG> ") == "ann@example.org"
    assert normalize_address("bob@Straße.test") == "bob@xn--strae-oqa.test"
    assert normalize_scope("News.Example.COM.") == "news.example.com"
    assert normalize_scope(None) == normalize_scope("") == normalize_scope("*") == GLOBAL
    assert scope_of_sender("bounces@News.Example.com") == "news.example.com"
    assert scope_of_sender("") == ""
    for bad in ("", "noat", "@x.test", "a@", "a b@x.test", "a@bad..domain"):
        with pytest.raises(SuppressionError):
            normalize_address(bad)
    with pytest.raises(SuppressionError):
        normalize_scope("no such..domain")


def test_scopes_and_check(store: SuppressionStore) -> None:
    store.add("Ann@Example.org", "news.test", "bad-mailbox", "test")
    store.add("bob@example.org", None, "complaint")
    assert store.count() == 2
    assert store.count("news.test") == 1
    found = store.check(["ANN@example.org", "bob@example.org", "carl@example.org"], "news.test")
    assert set(found) == {"ANN@example.org", "bob@example.org"}
    assert found["ANN@example.org"].reason == "bad-mailbox"
    assert found["bob@example.org"].scope == GLOBAL
    # another sender domain sees only the global list
    assert set(store.check(["ann@example.org", "bob@example.org"], "other.test")) == {
        "bob@example.org"
    }
    assert set(store.check(["bob@example.org"], "")) == {"bob@example.org"}
    # the sender domain's entry wins over a global one for the same address
    store.add("bob@example.org", "news.test", "unsubscribe")
    assert store.check(["bob@example.org"], "news.test")["bob@example.org"].reason == "unsubscribe"
    assert [e.scope for e in store.get("BOB@example.org")] == [GLOBAL, "news.test"]
    assert store.remove("bob@example.org", "news.test")
    assert not store.remove("bob@example.org", "news.test")
    assert store.count() == 2
    with pytest.raises(SuppressionError, match="unknown reason"):
        store.add("x@example.org", None, "because")


def test_check_batches_many_addresses(store: SuppressionStore) -> None:
    store.add_many([(f"u{i}@x.test", "*", "import") for i in range(0, 2000, 2)])
    found = store.check([f"u{i}@x.test" for i in range(2000)], "s.test")
    assert len(found) == 1000
    assert store.check(["not an address", "u0@x.test"], None).keys() == {"u0@x.test"}


def test_empty_list_fast_path_sees_other_connections(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    daemon = SuppressionStore(path, poll_every=0.0)
    cli = SuppressionStore(path)
    assert daemon.is_empty()
    assert daemon.check(["a@x.test"], "s.test") == {}
    cli.add("a@x.test")
    assert not daemon.is_empty()  # data_version moved: re-counted
    assert "a@x.test" in daemon.check(["a@x.test"], "s.test")
    cli.remove("a@x.test")
    assert daemon.is_empty()
    daemon.close()


def test_other_connections_are_polled_at_most_every_poll_every(tmp_path: Path) -> None:
    """data_version is asked once per interval, not per message: each SQLite call hands
    the GIL to the spool's committer thread. Own writes are seen at once."""
    path = tmp_path / "s.db"
    daemon = SuppressionStore(path, poll_every=3600.0)
    cli = SuppressionStore(path)
    assert daemon.is_empty()
    cli.add("a@x.test")
    assert daemon.is_empty()  # not asked again within the interval
    daemon.add("b@x.test")
    assert not daemon.is_empty()  # our own write forces the next poll
    assert set(daemon.check(["a@x.test", "b@x.test"], None)) == {"a@x.test", "b@x.test"}
    daemon.close()
    cli.close()
    cli.close()


def test_iter_paging(store: SuppressionStore) -> None:
    store.add_many([(f"u{i:02d}@x.test", "s.test", "manual") for i in range(10)])
    first = list(store.iter("s.test", limit=4))
    assert [e.address for e in first] == [f"u{i:02d}@x.test" for i in range(4)]
    rest = list(store.iter("s.test", after=first[-1].address, limit=100))
    assert len(rest) == 6
    assert store.iter(None, limit=3) is not None
    assert len(list(store.iter(None, limit=3))) == 3


def test_import_reports_bad_lines_and_keeps_good_ones(store: SuppressionStore) -> None:
    text = (
        "address,scope,reason\n"
        "ann@example.org\n"
        "bob@example.org,news.test,complaint\n"
        "not-an-address\n"
        "carl@example.org,,unsubscribe\n"
        "dora@example.org,news.test,why\n"
        "\n"
        "eve@example.org,a,b,c\n"
    )
    result = store.import_csv(io.StringIO(text), scope="shop.test")
    assert result.added == 3
    assert result.errors == [
        "line 4: not an address: 'not-an-address'",
        "line 6: unknown reason 'why': one of bad-mailbox, bad-domain, unsubscribe, "
        "complaint, manual, import",
        "line 8: too many columns (address[,scope,reason])",
    ]
    assert store.check(["ann@example.org"], "shop.test")["ann@example.org"].reason == "import"
    assert store.check(["bob@example.org"], "news.test")["bob@example.org"].reason == "complaint"
    out = io.StringIO()
    assert store.export_csv(out) == 3
    lines = out.getvalue().splitlines()
    assert lines[0] == "address,scope,reason,added,source"
    assert "bob@example.org,news.test,complaint,2026-12-03T00:00:00Z," in lines
    # an export imports back
    again = store.import_csv(io.StringIO(out.getvalue()))
    assert again.errors == [] or all("too many columns" in e for e in again.errors)


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SuppressionStore(path)
    s.add("a@x.test", "s.test", "bad-domain")
    s.close()
    s = SuppressionStore(path)
    assert s.count() == 1
    s.close()


def _bounce(rcpt: str, status: str, category: str = "", expired: bool = False) -> Bounced:
    info = MessageInfo("Q1", "bounces@news.test", T0, "", "", "", 10)
    return Bounced(
        T0,
        info,
        rcpt,
        "",
        status,
        f"550 {status} x",
        "mx",
        "q",
        "v",
        category=category,
        expired=expired,
    )


def test_auto_add_from_hard_bounces(store: SuppressionStore) -> None:
    assert auto_category(_bounce("a@x.test", "5.7.1", "bad-mailbox")) == "bad-mailbox"
    assert auto_category(_bounce("a@x.test", "5.1.1")) == "bad-mailbox"  # fallback
    assert auto_category(_bounce("a@x.test", "5.1.2")) == "bad-domain"
    assert auto_category(_bounce("a@x.test", "5.1.1", "policy-related")) == ""
    assert auto_category(_bounce("a@x.test", "5.1.1", expired=True)) == ""
    sub = AutoSuppress(store)
    info = MessageInfo("Q1", "bounces@news.test", T0, "", "", "", 10)
    sub.handle(
        [
            _bounce("A@x.test", "5.1.1", "bad-mailbox"),
            _bounce("b@x.test", "5.0.0", "bad-domain"),
            _bounce("c@x.test", "5.7.1", "spam-related"),
            _bounce("d@x.test", "4.4.1", "bad-mailbox", expired=True),
            Delivered(T0, info, "e@x.test", "", "2.0.0", "250 ok", "mx", "q", "v"),
        ]
    )
    assert {(e.address, e.scope, e.reason, e.source) for e in store.iter()} == {
        ("a@x.test", "news.test", "bad-mailbox", "bounce"),
        ("b@x.test", "news.test", "bad-domain", "bounce"),
    }


def test_suppressed_reply_marks_the_recipient(store: SuppressionStore) -> None:
    entry = store.add("a@x.test", None, "bad-mailbox")
    text = reply_text("a@x.test", entry)
    assert text == "<a@x.test> is suppressed (bad-mailbox, 2026-12-03)"
    rcpt = Recipient("a@x.test", status=RcptStatus.BOUNCED, last_reply=f"550 5.7.1 {text}")
    assert was_suppressed(rcpt)
    rcpt.last_mta = "mx.remote.test"  # a remote server saying the same is a real bounce
    assert not was_suppressed(rcpt)
