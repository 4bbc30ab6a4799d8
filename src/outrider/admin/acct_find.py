"""``outrider acct find``: the accounting rows about a recipient, a job or a message.

Like PowerMTA's ``pmtaacctfind``, it reads the files directly (no daemon needed): the
day's files and the ones moved aside (``acct-YYYY-MM-DD.N.csv``), plain or compressed
by the administrator (``.gz``, ``.bz2``, ``.xz``: Outrider itself never compresses
them). Only files whose day can hold rows in ``--since``..``--until`` are opened; each
is read by its own header, so files written with other ``[accounting] fields`` mix
freely. The rows found are printed as CSV with the configured columns.
"""

from __future__ import annotations

import argparse
import bz2
import calendar
import csv
import gzip
import lzma
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from outrider.admin.client import ConsoleError, load

_NAME = re.compile(r"acct-(\d{4}-\d\d-\d\d)(?:\.[1-9]\d*)?\.csv(?:\.(gz|bz2|xz))?")
_TIME_FORMS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")


@dataclass(frozen=True, slots=True)
class Query:
    """What a row must match; empty fields match anything. Times are epoch seconds (UTC)."""

    rcpt: str = ""
    job: str = ""
    orig: str = ""
    queue_id: str = ""
    types: frozenset[str] = frozenset()
    since: float | None = None
    until: float | None = None

    def matches(self, row: dict[str, str]) -> bool:
        if self.types and row.get("type") not in self.types:
            return False
        if self.rcpt and row.get("rcpt", "").lower() != self.rcpt.lower():
            return False
        if self.orig and row.get("orig", "").lower() != self.orig.lower():
            return False
        if self.job and row.get("jobId") != self.job:
            return False
        if self.queue_id and row.get("queueId") != self.queue_id:
            return False
        if self.since is None and self.until is None:
            return True
        logged = row_time(row.get("timeLogged", ""))
        if logged is None:
            return False
        return (self.since is None or logged >= self.since) and (
            self.until is None or logged < self.until
        )


def parse_time(text: str) -> float:
    """``2026-12-01T00:00`` (or with seconds, a space for the ``T``, or a bare date), UTC."""
    text = text.strip().removesuffix("Z").removesuffix("+0000").removesuffix("+00:00")
    for form in (*_TIME_FORMS, "%Y-%m-%d"):
        try:
            return float(calendar.timegm(time.strptime(text, form)))
        except ValueError:
            continue
    raise ValueError(f"not a time: {text!r} (use YYYY-MM-DDTHH:MM[:SS], UTC)")


def row_time(text: str) -> float | None:
    """A ``timeLogged`` cell (``2026-11-27 20:31:05+0000``) as epoch seconds."""
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S+0000")))
    except ValueError:
        return None


def files_for(log_dir: Path, since: float | None, until: float | None) -> list[Path]:
    """The accounting files (plain or compressed) whose UTC day overlaps the period, oldest
    day first."""
    chosen: list[tuple[str, str, Path]] = []
    try:
        entries = sorted(log_dir.iterdir())
    except OSError:
        return []
    for path in entries:
        match = _NAME.fullmatch(path.name)
        if match is None or not path.is_file():
            continue
        try:
            start = float(calendar.timegm(time.strptime(match.group(1), "%Y-%m-%d")))
        except ValueError:
            continue
        if since is not None and start + 86_400 <= since:
            continue
        if until is not None and start >= until:
            continue
        chosen.append((match.group(1), path.name, path))
    return [path for _, _, path in sorted(chosen)]


def _open(path: Path) -> IO[str]:
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix)
    if opener is None:
        return open(path, encoding="utf-8", errors="replace", newline="")
    return opener(path, "rt", encoding="utf-8", errors="replace", newline="")  # type: ignore[operator, no-any-return]


def rows_of(path: Path) -> Iterator[dict[str, str]]:
    """The rows of one file, keyed by its header (a torn or unreadable file yields what
    could be read, and a warning)."""
    try:
        with _open(path) as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header or header[0] != "type":
                return
            for values in reader:
                if len(values) == len(header):
                    yield dict(zip(header, values, strict=True))
    except (OSError, EOFError, csv.Error, lzma.LZMAError) as exc:
        print(f"outrider: {path}: {exc}", file=sys.stderr)


def find(files: Iterable[Path], query: Query) -> Iterator[dict[str, str]]:
    for path in files:
        for row in rows_of(path):
            if query.matches(row):
                yield row


def write_csv(rows: Iterable[dict[str, str]], fields: Sequence[str], out: IO[str]) -> int:
    """The rows as CSV under ``fields`` (a cell a file did not have is empty); the count."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(fields)
    count = 0
    for row in rows:
        writer.writerow([row.get(name, "") for name in fields])
        count += 1
    return count


def query_of(args: argparse.Namespace) -> Query:
    return Query(
        rcpt=args.rcpt,
        job=args.job,
        orig=args.orig,
        queue_id=args.queue_id,
        types=frozenset(t.strip() for t in args.type.split(",") if t.strip()),
        since=parse_time(args.since) if args.since else None,
        until=parse_time(args.until) if args.until else None,
    )


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    acct = sub.add_parser("acct", help="search the accounting files")
    verbs = acct.add_subparsers(dest="acct_command", required=True)
    find_ = verbs.add_parser("find", parents=[common], help="print the matching rows as CSV")
    find_.add_argument("--rcpt", default="", help="recipient address (any case)")
    find_.add_argument("--job", default="", help="job id (X-Job)")
    find_.add_argument("--orig", default="", help="envelope sender (any case)")
    find_.add_argument("--queue-id", default="", help="queue id (a DSN's is ID-F, ID-D, ID-S)")
    find_.add_argument("--type", default="", help="record types, e.g. d,b (default all)")
    find_.add_argument("--since", default="", help="from this UTC time, YYYY-MM-DDTHH:MM[:SS]")
    find_.add_argument("--until", default="", help="before this UTC time")


def run_acct(args: argparse.Namespace) -> int:
    """``outrider acct find``: exit 0 when rows were found, 1 when none (as grep does)."""
    try:
        query = query_of(args)
    except ValueError as exc:
        print(f"outrider: {exc}", file=sys.stderr)
        return 2
    try:
        config = load(args.config)
    except ConsoleError as exc:
        print(f"outrider: {exc}", file=sys.stderr)
        return 2
    files = files_for(config.server.log_dir, query.since, query.until)
    count = write_csv(find(files, query), config.accounting.fields, sys.stdout)
    return 0 if count else 1
