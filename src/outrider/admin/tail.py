"""``outrider tail``: follow the accounting log as the daemon writes it.

Reads ``<log-dir>/acct-YYYY-MM-DD.csv`` directly (no daemon needed), moves on to the
next day's file when it appears, and keeps only complete rows: a row is yielded once
its line end has been written.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from outrider.accounting.records import DEFAULT_FIELDS
from outrider.admin.client import ConsoleError, load

BACKLOG_BYTES = 1 << 20  # how far back the first rows shown are looked for
POLL = 0.25  # seconds between looks at the file


@dataclass(frozen=True, slots=True)
class RowFilter:
    types: frozenset[str] = frozenset()  # record types ("d", "b", "t", "q"); empty: all
    rcpt: str = ""
    job: str = ""

    def matches(self, row: dict[str, str]) -> bool:
        if self.types and row.get("type") not in self.types:
            return False
        if self.rcpt and row.get("rcpt", "").lower() != self.rcpt.lower():
            return False
        return not self.job or row.get("jobId") == self.job


def parse_row(line: str, fields: Sequence[str] = DEFAULT_FIELDS) -> dict[str, str] | None:
    """One CSV line as a record with ``fields`` (the file's header) as its keys (None for
    the header or a malformed line)."""
    try:
        [values] = list(csv.reader([line]))
    except (csv.Error, ValueError):
        return None
    if len(values) != len(fields) or values == list(fields):
        return None
    return dict(zip(fields, values, strict=True))


def header_of(path: Path) -> tuple[str, ...]:
    """The columns a file's header names (``[accounting] fields`` when it was written)."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            first = fh.readline().rstrip("\r\n")
    except OSError:
        return DEFAULT_FIELDS
    return tuple(first.split(",")) if first.startswith("type,") else DEFAULT_FIELDS


def newest(log_dir: Path, prefix: str = "acct") -> Path | None:
    files = sorted(log_dir.glob(f"{prefix}-????-??-??.csv"))
    return files[-1] if files else None


def _lines(data: bytes) -> tuple[list[str], bytes]:
    """Complete lines of ``data`` and the unfinished rest."""
    *lines, rest = data.split(b"\r\n")
    return [line.decode("utf-8", errors="replace") for line in lines if line], rest


def backlog(path: Path, keep: int, want: RowFilter) -> tuple[list[dict[str, str]], int]:
    """The last ``keep`` matching rows of ``path`` and the offset after its last whole line."""
    size = path.stat().st_size
    start = max(0, size - BACKLOG_BYTES)
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(size - start)
    if start:  # the first line read is probably cut
        data = data[data.find(b"\r\n") + 2 :] if b"\r\n" in data else b""
    lines, rest = _lines(data)
    fields = header_of(path)
    rows = [row for line in lines if (row := parse_row(line, fields)) and want.matches(row)]
    return (rows[-keep:] if keep > 0 else []), size - len(rest)


def follow(
    log_dir: Path,
    want: RowFilter,
    *,
    lines: int = 10,
    stop: Callable[[], bool] = lambda: False,
    poll: float = POLL,
) -> Iterator[dict[str, str]]:
    """Matching rows: the last ``lines`` already written, then each new one as it comes."""
    path = newest(log_dir)
    offset = 0
    if path is not None:
        rows, offset = backlog(path, lines, want)
        yield from rows
    pending = b""
    fields = header_of(path) if path is not None else DEFAULT_FIELDS
    while not stop():
        latest = newest(log_dir)
        moved = latest is not None and latest != path
        if path is not None:
            try:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    data = fh.read()
            except FileNotFoundError:
                data = b""
            offset += len(data)
            complete, pending = _lines(pending + data)
            for line in complete:
                row = parse_row(line, fields)
                if row is not None and want.matches(row):
                    yield row
        if moved:  # a new day: the old file was read to its end after the new one appeared
            path, offset, pending = latest, 0, b""
            fields = header_of(latest) if latest is not None else fields
            continue
        time.sleep(poll)


def run_tail(args: argparse.Namespace) -> int:
    """Follow the accounting log until interrupted (no daemon needed)."""
    want = RowFilter(
        types=frozenset(t.strip() for t in args.type.split(",") if t.strip()),
        rcpt=args.rcpt,
        job=args.job,
    )
    try:
        log_dir = load(args.config).server.log_dir
        for row in follow(log_dir, want, lines=max(0, args.lines)):
            if args.json:
                print(json.dumps(row, ensure_ascii=False), flush=True)
            else:
                print(tail_line(row), flush=True)
    except ConsoleError as exc:
        print(f"outrider: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def tail_line(row: dict[str, str]) -> str:
    cell = row.get
    where = f" {cell('queue')}" if cell("queue") else ""
    what = cell("dsnAction") or cell("rule", "")
    return (
        f"{cell('timeLogged', '')} {cell('type', '')} {cell('rcpt') or '-'} {what}"
        f" {cell('dsnStatus', '')}{where} {cell('dsnDiag', '')}"
    ).rstrip()
