"""Keeps a :class:`BlockedBloom` of one suppression file current, for one store.

Why: at 10 million entries an SQLite look-up costs 25-70 µs on the delivery process's
event loop, and nearly every look-up is a miss. The filter answers those misses alone.

How it stays correct:

- **Built off the event loop.** A worker thread scans the table on its own connection,
  inside one read transaction that also reads the change log's position, so the filter
  is exactly "every entry up to log position S". Until it is handed over, look-ups go to
  SQLite as before; a build never blocks start-up or delivery.
- **Kept current.** Every add (from any process) also appends ``(scope, address)`` to the
  ``suppression_log`` table in the same transaction; writers keep only the last
  :data:`KEEP` rows. When SQLite's ``data_version`` says another connection wrote, the
  owner reads the log rows after its position and adds them. A gap (it fell more than
  :data:`KEEP` rows behind) or a bulk marker (an import of more than :data:`LOG_LIMIT`
  entries writes one ``('', '')`` row instead of a row each) starts a fresh build.
- **Removals** are not logged: they leave false positives, and every filter hit is
  confirmed by SQLite, so correctness never depends on the filter.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from outrider.suppression.filter import BlockedBloom

log = logging.getLogger("outrider.suppression")

KEEP = 20_000  # log rows writers keep; a reader further behind rebuilds
LOG_LIMIT = 10_000  # add_many beyond this logs one bulk marker instead of a row each
HEADROOM = 1.25  # a build sizes the filter for this many times the entries it found
_CHUNK = 250  # rows per fetch in the build (~0.5 ms of work), then a pause:
_PAUSE = 0.0002  # s slept between chunks, so the event loop gets the GIL at once
_RETRY_AFTER = 60.0  # seconds before a failed build is tried again

LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS suppression_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    address TEXT NOT NULL
)
"""


def log_position(db: sqlite3.Connection) -> int:
    """The last log sequence number ever given (0 before the first add)."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'suppression_log'").fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True)
class FilterStats:
    """What :meth:`SuppressionStore.filter_stats` reports (tests, bench, logs)."""

    state: str  # "off" (not started), "building", "ready"
    entries: int  # keys in the filter
    nbytes: int  # memory of its bits
    build_seconds: float  # the last build, scan included
    builds: int  # builds handed over so far
    skipped: int  # addresses answered "not suppressed" by the filter, no query
    queries: int  # look-up queries check() sent to SQLite


@dataclass(frozen=True, slots=True)
class _Built:
    bloom: BlockedBloom
    position: int
    seconds: float


def scan(path: Path, stop: threading.Event) -> _Built | None:
    """Build a filter of the whole file (the worker thread's job); None when stopped."""
    start = time.perf_counter()
    db = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
    try:
        db.execute("BEGIN")  # one snapshot: the position and the rows agree
        position = log_position(db)
        (entries,) = db.execute("SELECT count(*) FROM suppression").fetchone()
        bloom = BlockedBloom(int(entries * HEADROOM))
        cursor = db.execute("SELECT scope, address FROM suppression")
        while rows := cursor.fetchmany(_CHUNK):
            if stop.is_set():
                return None
            bloom.update(rows)
            time.sleep(_PAUSE)  # let the event loop's thread have the GIL between chunks
        db.execute("COMMIT")
    finally:
        db.close()
    return _Built(bloom, position, time.perf_counter() - start)


class Prefilter:
    """The owner's view: ``current()`` is the filter to trust, or None (ask SQLite).
    Called only from the store's owner thread; the worker hands over one result."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self._path = path
        self._db = db
        self._bloom: BlockedBloom | None = None
        self._position = 0
        self._stale = False
        self._thread: threading.Thread | None = None
        self._result: _Built | None = None
        self._failed_at = 0.0
        self._stop = threading.Event()
        self._seconds = 0.0
        self._builds = 0
        self.skipped = 0
        self.queries = 0

    # -- building --------------------------------------------------------------------------
    def start(self) -> None:
        """Start a build in a worker thread unless one runs, a filter is ready, or the
        last build failed less than a minute ago."""
        if self._bloom is not None or self._thread is not None or self._stop.is_set():
            return
        if self._failed_at and time.monotonic() - self._failed_at < _RETRY_AFTER:
            return
        self._result = None
        self._thread = threading.Thread(target=self._work, name="suppression-filter", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            built = scan(self._path, self._stop)
        except sqlite3.Error as exc:
            log.warning("suppression list %s: filter not built: %s", self._path, exc)
            return
        if built is not None:
            log.info(
                "suppression list %s: filter of %d entries built in %.1f s (%.1f MB)",
                self._path,
                built.bloom.count,
                built.seconds,
                built.bloom.nbytes / 1e6,
            )
        self._result = built  # handed over at the owner's next look-up

    def _collect(self) -> None:
        thread = self._thread
        if thread is None or thread.is_alive():
            return
        self._thread = None
        built, self._result = self._result, None
        if built is None:
            self._failed_at = time.monotonic()
            return
        self._bloom, self._position, self._stale = built.bloom, built.position, True
        self._seconds = built.seconds
        self._builds += 1

    def rebuild(self) -> None:
        """Drop the filter (look-ups go to SQLite) and build a new one."""
        self._bloom = None
        self.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._bloom = None

    # -- keeping current -------------------------------------------------------------------
    def changed(self) -> None:
        """Another connection (or our own write) changed the file: catch up before use."""
        self._stale = True

    def wrote(self, keys: list[tuple[str, str]], first: int, last: int) -> None:
        """Our own add logged at positions ``first..last`` (one write transaction): add
        the keys, and skip those log rows if we were up to date just before them."""
        if self._bloom is None:
            return
        self._bloom.update(keys)
        if self._position == first - 1:
            self._position = last
        if self._bloom.full:
            self.rebuild()

    def current(self) -> BlockedBloom | None:
        """The filter, caught up with the log; None while there is none to trust."""
        self._collect()
        if self._bloom is None or not self._stale:
            return self._bloom
        top = log_position(self._db)
        behind = top - self._position
        if behind > KEEP:
            self.rebuild()  # writers trimmed the log past our position
            return None
        if behind > 0:
            rows = self._db.execute(
                "SELECT scope, address FROM suppression_log WHERE seq > ? AND seq <= ?",
                (self._position, top),
            ).fetchall()
            if len(rows) != behind or ("", "") in rows:
                self.rebuild()  # trimmed past us, or a bulk import: scan again
                return None
            self._bloom.update(rows)
            self._position = top
            if self._bloom.full:
                self.rebuild()
                return None
        self._stale = False
        return self._bloom

    def stats(self) -> FilterStats:
        self._collect()
        bloom = self._bloom
        state = "ready" if bloom is not None else "building" if self._thread else "off"
        return FilterStats(
            state,
            bloom.count if bloom else 0,
            bloom.nbytes if bloom else 0,
            self._seconds,
            self._builds,
            self.skipped,
            self.queries,
        )

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until a started build is handed over (tests and the bench only)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.current() is not None
