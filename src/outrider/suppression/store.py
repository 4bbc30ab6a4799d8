"""The suppression list: one SQLite file (WAL), shared by the daemon and the CLI.

One table keyed by (scope, address), ``WITHOUT ROWID`` so the primary key is the table:
a look-up is one B-tree descent and 10 million entries stay a few hundred MB. The scope
is a sender domain (normalised like ``[sender-domain."X"]``) or :data:`GLOBAL`.
Addresses are kept lower-cased with their domain in IDNA A-label form, so ``Ann@Straße.test``
and ``ann@xn--strae-oqa.test`` are one entry.

Writers (the CLI, the API, the auto-add subscriber) commit at once; WAL lets the daemon's
long-lived connection see them on its next query without reopening anything. The count
of entries is cached and re-read only when SQLite's ``data_version`` says another
connection changed the file, and that pragma is asked at most every ``poll_every`` seconds
(0.1 s in the daemon): each SQLite call lets the spool's committer thread take the GIL,
which cost the relay about 90 µs per message when it was asked for every one. Another
process's change is therefore seen within a tenth of a second; this process's own writes
at once.

In front of SQLite sits an in-memory filter (:mod:`outrider.suppression.prefilter`): built
by a worker thread at the first look-up, it answers "not suppressed" for almost every
address without a query; its hits are confirmed by SQLite. Every add also appends to the
``suppression_log`` table so the daemon's filter learns of the CLI's adds.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from outrider.message.domains import InvalidDomainError, normalize_domain
from outrider.suppression.prefilter import (
    KEEP,
    LOG_LIMIT,
    LOG_SCHEMA,
    FilterStats,
    Prefilter,
    log_position,
)

GLOBAL = "*"
REASONS = ("bad-mailbox", "bad-domain", "unsubscribe", "complaint", "manual", "import")
MAX_ADDRESS = 320  # octets: 64 local part + @ + 255 domain (RFC 5321 4.5.3.1)
_BAD = re.compile(r"[\s\x00-\x1f\x7f]")  # spaces and controls: never in an address
_BATCH = 500  # bound parameters per IN (...) query (SQLite allows 32766)
POLL_EVERY = 0.1  # s: how often data_version is asked (another process's writes show after)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS suppression (
    scope TEXT NOT NULL,
    address TEXT NOT NULL,
    reason TEXT NOT NULL,
    added REAL NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (scope, address)
) WITHOUT ROWID
"""


# With [cluster]: every add and removal made through this file, until the daemon has
# published it to the other nodes (outrider.cluster.suppression_sync), then deleted.
# ``address`` '' never occurs; ``scope`` NULL in a removal means every list.
_JOURNAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS suppression_journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    scope TEXT,
    address TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    added REAL NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT ''
)
"""
# Small named values the cluster sync keeps with the list (the stream position read).
_META_SCHEMA = "CREATE TABLE IF NOT EXISTS suppression_meta (key TEXT PRIMARY KEY, value TEXT)"


@dataclass(frozen=True, slots=True)
class Change:
    """One journalled add (``op`` "a") or removal ("r"; ``scope`` None: every list)."""

    seq: int
    op: str
    scope: str | None
    address: str
    reason: str = ""
    added: float = 0.0
    source: str = ""


class SuppressionError(ValueError):
    """Bad input (an address, a scope, a reason): the message says which and why."""


@dataclass(frozen=True, slots=True)
class Entry:
    scope: str
    address: str
    reason: str
    added: float
    source: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "address": self.address,
            "scope": self.scope,
            "reason": self.reason,
            "added": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.added)),
            "source": self.source,
        }


def normalize_address(address: str) -> str:
    """``Local@Domain`` -> ``local@a-label-domain``; raises :class:`SuppressionError`."""
    text = address.strip().removeprefix("<").removesuffix(">").strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or len(text) > MAX_ADDRESS or _BAD.search(text):
        raise SuppressionError(f"not an address: {address!r}")
    try:
        domain = normalize_domain(domain)
    except InvalidDomainError as exc:
        raise SuppressionError(f"not an address: {address!r} ({exc.reason})") from None
    return f"{local.lower()}@{domain}"


def normalize_scope(scope: str | None) -> str:
    """A sender domain in its normal form, or :data:`GLOBAL` for ``None``/``""``/``*``."""
    if scope is None or scope.strip() in ("", GLOBAL):
        return GLOBAL
    try:
        return normalize_domain(scope.strip())
    except InvalidDomainError as exc:
        raise SuppressionError(f"not a sender domain: {scope!r} ({exc.reason})") from None


def scope_of_sender(sender: str) -> str:
    """The sender-domain scope of a MAIL FROM address ("" for the null sender)."""
    domain = sender.rpartition("@")[2]
    if not domain:
        return ""
    try:
        return normalize_domain(domain)
    except InvalidDomainError:
        return ""


def check_reason(reason: str) -> str:
    if reason not in REASONS:
        raise SuppressionError(f"unknown reason {reason!r}: one of {', '.join(REASONS)}")
    return reason


@dataclass(frozen=True, slots=True)
class ImportResult:
    added: int
    errors: list[str]  # "line N: why"


class SuppressionStore:
    """One connection to the suppression file. Not thread-safe: one owner (the daemon's
    event loop, or one CLI command). ``prefilter=False`` keeps every look-up in SQLite
    (the filter's worker thread only starts at the first :meth:`check` anyway)."""

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        prefilter: bool = True,
        poll_every: float = POLL_EVERY,
        journal: bool = False,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.execute(LOG_SCHEMA)
        self.journal = journal  # [cluster]: record changes for the other nodes
        if journal:
            self._db.execute(_JOURNAL_SCHEMA)
            self._db.execute(_META_SCHEMA)
        self._clock = clock
        self._version = -1
        self._count: int | None = None
        self._empty = True
        self._poll_every = poll_every
        self._next_poll = 0.0
        self._filter = Prefilter(self.path, self._db) if prefilter else None

    def close(self) -> None:
        if self._filter is not None:
            self._filter.close()
        self._db.close()

    def _now(self) -> float:
        return self._clock()

    # -- counting (the empty-list fast path) -----------------------------------------------
    def count(self, scope: str | None = None) -> int:
        if scope is not None:
            row = self._db.execute(
                "SELECT count(*) FROM suppression WHERE scope = ?", (normalize_scope(scope),)
            ).fetchone()
            return int(row[0])
        self._poll()
        if self._count is None:
            self._count = int(self._db.execute("SELECT count(*) FROM suppression").fetchone()[0])
        return self._count

    def _poll(self) -> None:
        """One pragma; when the file changed, re-check emptiness (O(1), unlike a count of
        10 million rows), forget the count and tell the filter to catch up."""
        now = time.monotonic()
        if now < self._next_poll:
            return
        self._next_poll = now + self._poll_every
        (version,) = self._db.execute("PRAGMA data_version").fetchone()
        if version != self._version:
            self._version = int(version)
            self._count = None
            row = self._db.execute("SELECT EXISTS (SELECT 1 FROM suppression)").fetchone()
            self._empty = not row[0]
            if self._filter is not None:
                self._filter.changed()

    def _changed(self) -> None:
        """Our own writes do not move our data_version: force a re-check next time."""
        self._version = -1
        self._next_poll = 0.0

    def is_empty(self) -> bool:
        self._poll()
        return self._empty

    # -- the in-memory filter --------------------------------------------------------------
    def start_filter(self, wait: float = 0.0) -> bool:
        """Start building the filter now (else the first :meth:`check` does); with
        ``wait``, block up to that many seconds for it. True when it is in use."""
        if self._filter is None:
            return False
        self._filter.start()
        return self._filter.wait(wait) if wait else self._filter.current() is not None

    def filter_stats(self) -> FilterStats:
        """The filter's state, size and memory, and how many look-ups it saved."""
        if self._filter is None:
            return FilterStats("off", 0, 0, 0.0, 0, 0, 0)
        return self._filter.stats()

    # -- reading ---------------------------------------------------------------------------
    def check(self, addresses: Iterable[str], scope: str | None) -> dict[str, Entry]:
        """The entries suppressing any of ``addresses`` for sender scope ``scope`` (its
        own list and the global one), keyed by the address as given. One query per 500
        addresses; the sender scope's entry wins over the global one. Addresses that are
        not valid are simply not suppressed."""
        keys: dict[str, list[str]] = {}
        for given in addresses:
            try:
                keys.setdefault(normalize_address(given), []).append(given)
            except SuppressionError:
                continue
        if not keys:
            return {}
        self._poll()
        if self._empty:
            return {}
        scopes = [GLOBAL] if not scope or scope == GLOBAL else [scope, GLOBAL]
        found: dict[str, Entry] = {}
        norm = list(keys)
        filt = self._filter
        if filt is not None:
            bloom = filt.current()
            if bloom is None:
                filt.start()  # until it is built, SQLite answers everything
            else:
                maybe = bloom.might_contain_any
                norm = [a for a in norm if maybe(scopes, a)]
                filt.skipped += len(keys) - len(norm)
                if not norm:
                    return found
            filt.queries += (len(norm) + _BATCH - 1) // _BATCH
        for start in range(0, len(norm), _BATCH):
            chunk = norm[start : start + _BATCH]
            marks = ",".join("?" * len(chunk))
            smarks = ",".join("?" * len(scopes))
            rows = self._db.execute(
                f"SELECT scope, address, reason, added, source FROM suppression "
                f"WHERE scope IN ({smarks}) AND address IN ({marks})",
                (*scopes, *chunk),
            ).fetchall()
            for row in rows:
                entry = Entry(*row)
                for given in keys[entry.address]:
                    if given not in found or entry.scope != GLOBAL:
                        found[given] = entry
        return found

    def get(self, address: str) -> list[Entry]:
        """Every scope's entry for one address."""
        rows = self._db.execute(
            "SELECT scope, address, reason, added, source FROM suppression WHERE address = ? "
            "ORDER BY scope",
            (normalize_address(address),),
        ).fetchall()
        return [Entry(*row) for row in rows]

    def iter(self, scope: str | None = None, *, after: str = "", limit: int = 0) -> Iterator[Entry]:
        """Entries in (scope, address) order; ``after`` is the last address seen (paging
        within one scope), ``limit`` 0 means all."""
        sql = "SELECT scope, address, reason, added, source FROM suppression"
        args: list[object] = []
        if scope is not None:
            sql += " WHERE scope = ? AND address > ?"
            args += [normalize_scope(scope), after]
        sql += " ORDER BY scope, address"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        for row in self._db.execute(sql, args):
            yield Entry(*row)

    # -- writing ---------------------------------------------------------------------------
    def add(
        self, address: str, scope: str | None = None, reason: str = "manual", source: str = ""
    ) -> Entry:
        """Add or replace an entry; returns it as stored."""
        entry = Entry(
            normalize_scope(scope),
            normalize_address(address),
            check_reason(reason),
            self._now(),
            source,
        )
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO suppression VALUES (?, ?, ?, ?, ?)",
                (entry.scope, entry.address, entry.reason, entry.added, entry.source),
            )
            logged = self._log([(entry.scope, entry.address)])
            if self.journal:
                self._journal_adds(
                    [(entry.scope, entry.address, entry.reason, entry.added, entry.source)]
                )
        self._wrote([(entry.scope, entry.address)], logged)
        return entry

    def add_many(self, entries: Sequence[tuple[str, str, str]], source: str = "") -> int:
        """Add (address, scope, reason) triples, already checked, in one transaction."""
        now = self._now()
        rows = [
            (normalize_scope(scope), normalize_address(address), check_reason(reason), now, source)
            for address, scope, reason in entries
        ]
        keys = [(row[0], row[1]) for row in rows]
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO suppression VALUES (?, ?, ?, ?, ?)", rows)
            logged = self._log(keys)
            if self.journal:
                self._journal_adds(rows)
        self._wrote(keys, logged)
        return len(rows)

    def _journal_adds(self, rows: Sequence[tuple[str, str, str, float, str]]) -> None:
        self._db.executemany(
            "INSERT INTO suppression_journal (op, scope, address, reason, added, source) "
            "VALUES ('a', ?, ?, ?, ?, ?)",
            rows,
        )

    # -- the cluster's journal (only with journal=True) --------------------------------------
    def journal_after(self, seq: int, limit: int = 1000) -> list[Change]:
        """Journalled changes after ``seq``, oldest first."""
        rows = self._db.execute(
            "SELECT seq, op, scope, address, reason, added, source FROM suppression_journal "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        return [Change(*row) for row in rows]

    def journal_done(self, seq: int) -> None:
        """Forget the journal up to ``seq`` (published)."""
        self._db.execute("DELETE FROM suppression_journal WHERE seq <= ?", (seq,))

    def meta(self, key: str) -> str | None:
        row = self._db.execute(
            "SELECT value FROM suppression_meta WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO suppression_meta VALUES (?, ?)", (key, value))

    def apply_remote(self, changes: Sequence[Change]) -> None:
        """Another node's adds and removals, in order, in one transaction, not journalled
        (idempotent: applying one twice changes nothing)."""
        if not changes:
            return
        keys: list[tuple[str, str]] = []
        with self._transaction():
            for change in changes:
                if change.op == "a" and change.scope is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO suppression VALUES (?, ?, ?, ?, ?)",
                        (change.scope, change.address, change.reason, change.added, change.source),
                    )
                    keys.append((change.scope, change.address))
                elif change.op == "r" and change.scope is None:
                    self._db.execute("DELETE FROM suppression WHERE address = ?", (change.address,))
                elif change.op == "r":
                    self._db.execute(
                        "DELETE FROM suppression WHERE scope = ? AND address = ?",
                        (change.scope, change.address),
                    )
            logged = self._log(keys) if keys else (0, 0)
        if keys:
            self._wrote(keys, logged)
        else:
            self._changed()

    def _log(self, keys: list[tuple[str, str]]) -> tuple[int, int]:
        """Inside the add's transaction: append the keys to the change log (one bulk
        marker beyond LOG_LIMIT), trim it to its last KEEP rows; the positions written."""
        if len(keys) > LOG_LIMIT:
            self._db.execute("INSERT INTO suppression_log (scope, address) VALUES ('', '')")
        else:
            self._db.executemany("INSERT INTO suppression_log (scope, address) VALUES (?, ?)", keys)
        written = 1 if len(keys) > LOG_LIMIT else len(keys)
        last = log_position(self._db)
        self._db.execute("DELETE FROM suppression_log WHERE seq <= ?", (last - KEEP,))
        return last - written + 1, last

    def _wrote(self, keys: list[tuple[str, str]], logged: tuple[int, int]) -> None:
        self._changed()
        if self._filter is not None and keys:
            self._filter.wrote(keys, *logged)

    def remove(self, address: str, scope: str | None = None) -> int:
        """Remove the address from ``scope``'s list (``"*"``: the global one), or from
        every list when ``scope`` is None; the number of entries removed."""
        norm = normalize_address(address)
        norm_scope = None if scope is None else normalize_scope(scope)
        with self._transaction():
            if norm_scope is None:
                cur = self._db.execute("DELETE FROM suppression WHERE address = ?", (norm,))
            else:
                cur = self._db.execute(
                    "DELETE FROM suppression WHERE scope = ? AND address = ?", (norm_scope, norm)
                )
            if self.journal:
                self._db.execute(
                    "INSERT INTO suppression_journal (op, scope, address) VALUES ('r', ?, ?)",
                    (norm_scope, norm),
                )
        self._changed()
        return cur.rowcount

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # -- CSV -------------------------------------------------------------------------------
    def import_csv(
        self, stream: TextIO, scope: str | None = None, reason: str = "import", source: str = ""
    ) -> ImportResult:
        """Columns ``address[,scope,reason]``; a first line naming ``address`` is a header.
        A bad line is reported (``line N: why``) and skipped; the good ones are added."""
        default_scope = normalize_scope(scope)
        check_reason(reason)
        good: list[tuple[str, str, str]] = []
        errors: list[str] = []
        for number, row in enumerate(csv.reader(stream), start=1):
            cells = [c.strip() for c in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if number == 1 and cells[0].lower() == "address":
                continue
            if len(cells) > 3:
                errors.append(f"line {number}: too many columns (address[,scope,reason])")
                continue
            try:
                address = normalize_address(cells[0])
                line_scope = normalize_scope(cells[1]) if len(cells) > 1 and cells[1] else None
                line_reason = check_reason(cells[2]) if len(cells) > 2 and cells[2] else reason
            except SuppressionError as exc:
                errors.append(f"line {number}: {exc}")
                continue
            good.append((address, line_scope or default_scope, line_reason))
        added = self.add_many(good, source) if good else 0
        return ImportResult(added, errors)

    def export_csv(self, out: TextIO, scope: str | None = None) -> int:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["address", "scope", "reason", "added", "source"])
        n = 0
        for entry in self.iter(scope):
            row = entry.as_json()
            writer.writerow(
                [row["address"], row["scope"], row["reason"], row["added"], row["source"]]
            )
            n += 1
        return n


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def export_text(store: SuppressionStore, scope: str | None = None) -> str:
    buf = io.StringIO()
    store.export_csv(buf, scope)
    return buf.getvalue()
