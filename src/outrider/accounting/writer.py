"""The CSV accounting log: one RFC 4180 file per UTC day, buffered, single writer.

Durability choice: records are buffered in memory and handed to the OS on ``flush()``
(the daemon calls it at least once a second) and on ``close()``; the file is fsynced only
on rotation and close. An fsync per record would cap delivery throughput at the disk's
sync rate, and the accounting log is a report, not the source of truth: the spool is. A
crash therefore loses at most the last unflushed second of rows; a power loss at most
what the OS had not yet written back. A torn last row left by such a crash is terminated
on reopen (see ``_repair_suffix``) so later rows stay parseable.

The daemon owns exactly one ``AccountingLog``; it is neither thread- nor multi-process
safe (two writers appending to one file could interleave partial rows).
"""

from __future__ import annotations

import calendar
import csv
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from outrider.accounting.records import FIELDS, AccountingRecord, to_row

_DAY = 86_400
_BUFFER_SIZE = 1 << 16
_TAIL_SIZE = 1 << 16  # how much of an existing file is examined for a torn last row
_ROW_START = re.compile(rb"\r\n[a-z]{1,4},\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+0000,")


class AccountingLog:
    """Appends ``AccountingRecord`` rows to ``<log_dir>/<prefix>-YYYY-MM-DD.csv`` (UTC day)."""

    def __init__(
        self,
        log_dir: Path,
        *,
        prefix: str = "acct",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dir = Path(log_dir)
        self._prefix = prefix
        self._clock = clock
        self._file: IO[str] | None = None
        self._writer: Any = None  # csv writer object; typeshed's type is private
        self._day_start = 0.0
        self._day_end = 0.0  # [start, end) of the UTC day the open file covers
        self._path: Path | None = None
        self._closed = False

    @property
    def path(self) -> Path | None:
        """The file currently open for appending, or None before the first write."""
        return self._path

    def write(self, record: AccountingRecord) -> None:
        self._current_writer().writerow(to_row(record))

    def write_many(self, records: Iterable[AccountingRecord]) -> None:
        """Write a batch; the whole batch goes to the file of the day it is written on."""
        self._current_writer().writerows(to_row(r) for r in records)

    def write_rows(self, rows: Iterable[Sequence[str]]) -> None:
        """Write rows already in ``FIELDS`` order (see :func:`records.to_row`)."""
        self._current_writer().writerows(rows)

    def flush(self) -> None:
        """Hand buffered rows to the OS (no fsync): call at least once a second."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Flush, fsync and close; further writes raise ``ValueError``."""
        self._close_file()
        self._closed = True

    def __enter__(self) -> AccountingLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _current_writer(self) -> Any:
        now = self._clock()
        if self._file is None or not self._day_start <= now < self._day_end:
            if self._closed:
                raise ValueError("accounting log is closed")
            self._close_file()
            self._open_for(now)
        return self._writer

    def _open_for(self, now: float) -> None:
        day = time.gmtime(now)
        self._day_start = float(calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0)))
        self._day_end = self._day_start + _DAY
        self._dir.mkdir(parents=True, exist_ok=True)
        path = self._dir / f"{self._prefix}-{time.strftime('%Y-%m-%d', day)}.csv"
        needs_header, repair = _inspect_existing(path)
        handle = open(  # noqa: SIM115 - kept open across calls, closed in _close_file
            path, "a", encoding="utf-8", newline="", buffering=_BUFFER_SIZE
        )
        try:
            if repair:
                handle.write(repair)
            writer = csv.writer(handle, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
            if needs_header:
                writer.writerow(FIELDS)
        except BaseException:
            handle.close()
            raise
        self._file = handle
        self._writer = writer
        self._path = path

    def _close_file(self) -> None:
        handle = self._file
        if handle is None:
            return
        self._file = None
        self._writer = None
        try:
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            handle.close()


def _inspect_existing(path: Path) -> tuple[bool, str]:
    """(needs a header row, text that terminates a torn last row) for a file to append to."""
    try:
        with open(path, "rb") as existing:
            size = existing.seek(0, os.SEEK_END)
            if size == 0:
                return True, ""
            start = max(0, size - _TAIL_SIZE)
            existing.seek(start)
            tail = existing.read()
    except FileNotFoundError:
        return True, ""
    return False, _repair_suffix(b"\r\n" + tail if start == 0 else tail)


def _repair_suffix(tail: bytes) -> str:
    """What to append so the next row starts on a record boundary after a torn write.

    A crash can cut the last row anywhere, including inside a quoted field (which may
    itself contain CRLF). Rows written by this class always start with a type code and a
    timestamp, so the last such start in the tail delimits the last row; an odd number of
    quotes after it means the cut fell inside a quoted field, which must be closed first.
    """
    last_row = 0
    for match in _ROW_START.finditer(tail):
        last_row = match.start()
    if tail.count(b'"', last_row) % 2:
        return '"\r\n'
    if tail.endswith(b"\r\n"):
        return ""
    return "\n" if tail.endswith(b"\r") else "\r\n"
