"""The store's in-memory filter: misses answered without a query, other connections'
adds seen through the change log, removals confirmed by SQLite, rebuilds on a bulk
import or a log gap, and a model-checked sequence of writes from two connections."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outrider.suppression import prefilter
from outrider.suppression.store import GLOBAL, SuppressionStore


class Statements:
    """Every SQL statement a connection runs (sqlite3's trace callback)."""

    def __init__(self, store: SuppressionStore) -> None:
        self.seen: list[str] = []
        store._db.set_trace_callback(self.seen.append)

    def lookups(self) -> list[str]:
        found = [s for s in self.seen if s.startswith("SELECT scope, address, reason")]
        self.seen.clear()
        return found


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "suppression.db"


@pytest.fixture
def daemon(path: Path) -> Iterator[SuppressionStore]:
    cli = SuppressionStore(path, prefilter=False)
    cli.add_many([(f"u{i}@x.test", "news.test", "import") for i in range(500)])
    cli.add("g@x.test", None, "complaint")
    cli.close()
    store = SuppressionStore(path)
    yield store
    store.close()


def test_misses_run_no_query_once_built(daemon: SuppressionStore) -> None:
    trace = Statements(daemon)
    assert daemon.filter_stats().state == "off"
    # before the filter exists, SQLite answers (and the first check starts the build)
    assert daemon.check(["nobody@x.test"], "news.test") == {}
    assert len(trace.lookups()) == 1
    assert daemon.start_filter(wait=10)
    stats = daemon.filter_stats()
    assert (stats.state, stats.entries, stats.builds) == ("ready", 501, 1)
    assert stats.nbytes > 0 and stats.build_seconds >= 0
    misses = [f"m{i}@x.test" for i in range(200)]
    for one in misses:
        assert not daemon.is_empty()
        assert daemon.check([one], "news.test") == {}
    assert len([s for s in trace.seen if "PRAGMA" in s]) <= 2  # once per poll interval
    assert len(trace.lookups()) <= 10  # ~1% false positives, confirmed by SQLite
    assert daemon.filter_stats().skipped >= 190
    # hits still come from SQLite, with their entry
    found = daemon.check(["U7@x.test", "g@x.test", "m1@x.test"], "news.test")
    assert set(found) == {"U7@x.test", "g@x.test"}
    assert found["g@x.test"].scope == GLOBAL
    assert len(trace.lookups()) == 1
    assert daemon.check(["u7@x.test"], "other.test") == {}  # another scope's key


def test_other_connection_adds_are_seen_without_rebuild(
    daemon: SuppressionStore, path: Path
) -> None:
    assert daemon.start_filter(wait=10)
    cli = SuppressionStore(path, prefilter=False)
    cli.add("late@x.test", "news.test", "unsubscribe")
    cli.add_many([(f"b{i}@x.test", "*", "import") for i in range(50)])
    assert set(daemon.check(["late@x.test", "b3@x.test"], "news.test")) == {
        "late@x.test",
        "b3@x.test",
    }
    stats = daemon.filter_stats()
    assert (stats.state, stats.builds, stats.entries) == ("ready", 1, 501 + 51)
    cli.close()


def test_own_adds_go_straight_into_the_filter(daemon: SuppressionStore) -> None:
    assert daemon.start_filter(wait=10)
    trace = Statements(daemon)
    daemon.add("mine@x.test", "news.test", "unsubscribe")
    daemon.add_many([("more@x.test", "*", "complaint")])
    trace.seen.clear()
    assert set(daemon.check(["mine@x.test", "more@x.test"], "news.test")) == {
        "mine@x.test",
        "more@x.test",
    }
    # it skipped its own log rows: no catch-up read, just the position
    assert not [s for s in trace.seen if "FROM suppression_log" in s]
    assert daemon.filter_stats().builds == 1


def test_a_removal_is_confirmed_by_sqlite(daemon: SuppressionStore, path: Path) -> None:
    assert daemon.start_filter(wait=10)
    assert "u5@x.test" in daemon.check(["u5@x.test"], "news.test")
    cli = SuppressionStore(path, prefilter=False)
    assert cli.remove("u5@x.test") == 1
    trace = Statements(daemon)
    assert daemon.check(["u5@x.test"], "news.test") == {}  # a filter hit, SQLite says no
    assert len(trace.lookups()) == 1
    daemon.remove("u6@x.test", "news.test")
    assert daemon.check(["u6@x.test"], "news.test") == {}
    cli.close()


def test_bulk_import_elsewhere_rebuilds(
    daemon: SuppressionStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert daemon.start_filter(wait=10)
    monkeypatch.setattr("outrider.suppression.store.LOG_LIMIT", 20)
    cli = SuppressionStore(path, prefilter=False)
    cli.add_many([(f"bulk{i}@x.test", "news.test", "import") for i in range(30)])
    # the bulk marker: the filter is dropped and rebuilt; SQLite answers meanwhile
    assert "bulk29@x.test" in daemon.check(["bulk29@x.test"], "news.test")
    assert daemon.start_filter(wait=10)
    stats = daemon.filter_stats()
    assert (stats.builds, stats.entries) == (2, 531)
    assert "bulk3@x.test" in daemon.check(["bulk3@x.test"], "news.test")
    cli.close()


def test_a_gap_in_the_log_rebuilds(daemon: SuppressionStore, path: Path) -> None:
    assert daemon.start_filter(wait=10)
    raw = sqlite3.connect(str(path), isolation_level=None)
    cli = SuppressionStore(path, prefilter=False)
    cli.add("a@y.test")
    raw.execute("DELETE FROM suppression_log")  # as if writers trimmed past the daemon
    cli.add("b@y.test")
    assert set(daemon.check(["a@y.test", "b@y.test"], None)) == {"a@y.test", "b@y.test"}
    assert daemon.start_filter(wait=10)
    assert daemon.filter_stats().builds == 2
    raw.close()
    cli.close()


def test_writers_keep_the_log_short(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("outrider.suppression.store.KEEP", 5)
    store = SuppressionStore(path, prefilter=False)
    for i in range(12):
        store.add(f"a{i}@x.test")
    rows = store._db.execute("SELECT seq FROM suppression_log").fetchall()
    assert [r[0] for r in rows] == list(range(8, 13))
    assert prefilter.log_position(store._db) == 12
    store.close()


def test_prefilter_off(path: Path) -> None:
    store = SuppressionStore(path, prefilter=False)
    store.add("a@x.test")
    assert "a@x.test" in store.check(["a@x.test"], None)
    assert not store.start_filter(wait=1)
    assert store.filter_stats().state == "off"
    store.close()


ops = st.lists(
    st.tuples(
        st.sampled_from(["add-daemon", "add-cli", "remove-cli", "remove-daemon", "check"]),
        st.integers(0, 15),
        st.sampled_from([None, "news.test"]),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(ops)
def test_filtered_store_agrees_with_a_model(steps: list[tuple[str, int, str | None]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "s.db"
        cli = SuppressionStore(file, prefilter=False)
        cli.add("seed@x.test")
        daemon = SuppressionStore(file, poll_every=0.0)
        assert daemon.start_filter(wait=10)
        model: set[tuple[str, str]] = {(GLOBAL, "seed@x.test")}
        for op, n, scope in steps:
            address = f"u{n}@x.test"
            key = (scope or GLOBAL, address)
            if op == "add-daemon":
                daemon.add(address, scope)
                model.add(key)
            elif op == "add-cli":
                cli.add(address, scope)
                model.add(key)
            elif op.startswith("remove"):
                (daemon if op == "remove-daemon" else cli).remove(address, scope or GLOBAL)
                model.discard(key)
            else:
                every = [f"u{i}@x.test" for i in range(16)] + ["seed@x.test"]
                for sender in ("news.test", ""):
                    want = {a for a in every if (GLOBAL, a) in model or (sender, a) in model}
                    assert set(daemon.check(every, sender)) == want
        daemon.close()
        cli.close()
