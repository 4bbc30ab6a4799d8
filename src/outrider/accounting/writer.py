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

Retention (``keep``): files whose every row is older than ``keep`` are deleted by
:meth:`AccountingLog.remove_expired`, which the daemon calls at start and the writer at
each daily rotation (see :mod:`retention`). A day's file whose header is not today's
columns (written by an older release or with other ``[accounting] fields``, or a torn
header) is moved aside to
``<prefix>-YYYY-MM-DD.N.csv`` rather than appended to, so each file has one header that
names every column of its rows.
"""

from __future__ import annotations

import calendar
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO

from outrider.accounting.csvline import csv_lines
from outrider.accounting.records import (
    DEFAULT_FIELDS,
    AccountingRecord,
    Projection,
    projection,
    to_row,
)
from outrider.accounting.retention import aside_name, expired, file_name

log = logging.getLogger("outrider.accounting")

_DAY = 86_400
_BUFFER_SIZE = 1 << 16
_TAIL_SIZE = 1 << 16  # how much of an existing file is examined for a torn last row
_ROW_START = re.compile(rb"\r\n[a-z]{1,4},\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+0000,")
# Without type and timeLogged first, any line end may start a row.
_ANY_ROW_START = re.compile(rb"\r\n")


class AccountingLog:
    """Appends ``AccountingRecord`` rows to ``<log_dir>/<prefix>-YYYY-MM-DD.csv`` (UTC day)."""

    def __init__(
        self,
        log_dir: Path,
        *,
        prefix: str = "acct",
        clock: Callable[[], float] = time.time,
        keep: float | None = None,
        fields: Sequence[str] = DEFAULT_FIELDS,
    ) -> None:
        self._dir = Path(log_dir)
        self._prefix = prefix
        self._clock = clock
        self._file: IO[str] | None = None
        self._day_start = 0.0
        self._day_end = 0.0  # [start, end) of the UTC day the open file covers
        self._path: Path | None = None
        self._closed = False
        self.keep = keep  # seconds; None keeps every file
        self._pruned_until = 0.0  # end of the UTC day expired files were last removed on
        self._fields: tuple[str, ...] = ()
        self._pick: Projection | None = None
        self._header = b""
        self.fields = fields

    @property
    def fields(self) -> tuple[str, ...]:
        """The file's columns (``[accounting] fields``), a selection of ``FIELDS``."""
        return self._fields

    @fields.setter
    def fields(self, fields: Sequence[str]) -> None:
        """Other columns start a new file: the open one is closed, and the day's file is
        moved aside at the next row because its header is not the new one."""
        chosen = tuple(fields)
        if chosen == self._fields:
            return
        self._pick = projection(chosen)
        self._fields = chosen
        self._header = (",".join(chosen) + "\r\n").encode()
        self._close_file()

    @property
    def path(self) -> Path | None:
        """The file currently open for appending, or None before the first write."""
        return self._path

    def write(self, record: AccountingRecord) -> None:
        self.write_rows((to_row(record),))

    def write_many(self, records: Iterable[AccountingRecord]) -> None:
        """Write a batch; the whole batch goes to the file of the day it is written on."""
        self.write_rows([to_row(r) for r in records])

    def write_rows(self, rows: Iterable[Sequence[str]]) -> None:
        """Write rows built in ``FIELDS`` order (see :func:`records.to_row`); the file
        gets the configured columns of each."""
        pick = self._pick
        self._current_file().write(csv_lines(rows if pick is None else map(pick, rows)))

    def remove_expired(self) -> list[Path]:
        """Delete the files past ``keep`` (logged at INFO each); returns them.

        An error (a file another process removed, a directory not readable) is logged
        and leaves the files as they are: retention must never stop the rows."""
        now = self._clock()
        self._pruned_until = _day_bounds(now)[1]
        if self.keep is None:
            return []
        try:
            entries = {e.name: e for e in os.scandir(self._dir) if e.is_file(follow_symlinks=False)}
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("accounting: cannot list %s for retention: %s", self._dir, exc)
            return []
        removed = []
        for name in expired(entries, prefix=self._prefix, now=now, keep=self.keep):
            path = Path(entries[name].path)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("accounting: cannot delete %s: %s", path, exc)
                continue
            log.info("accounting: deleted %s (older than keep)", path)
            removed.append(path)
        return removed

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

    def _current_file(self) -> IO[str]:
        now = self._clock()
        if self._file is None or not self._day_start <= now < self._day_end:
            if self._closed:
                raise ValueError("accounting log is closed")
            self._close_file()
            self._open_for(now)
        assert self._file is not None
        return self._file

    def _open_for(self, now: float) -> None:
        self._day_start, self._day_end = _day_bounds(now)
        self._dir.mkdir(parents=True, exist_ok=True)
        if self._day_end > self._pruned_until:  # a new day: the daily rotation
            self.remove_expired()
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        path = self._dir / file_name(self._prefix, day)
        found = _inspect_existing(path, self._header)
        if found is None:
            self._move_aside(path, day)
            found = (True, "")
        needs_header, repair = found
        handle = open(  # noqa: SIM115 - kept open across calls, closed in _close_file
            path, "a", encoding="utf-8", newline="", buffering=_BUFFER_SIZE
        )
        try:
            if repair:
                handle.write(repair)
            if needs_header:
                handle.write(csv_lines([self._fields]))
        except BaseException:
            handle.close()
            raise
        self._file = handle
        self._path = path

    def _move_aside(self, path: Path, day: str) -> None:
        """Keep a day's file whose columns are not ours under another name."""
        aside = self._dir / aside_name(self._prefix, day, os.listdir(self._dir))
        try:
            os.rename(path, aside)
        except OSError as exc:  # append to it after all: a row with extra cells, not none
            log.warning("accounting: cannot move %s aside: %s", path, exc)
            return
        log.info("accounting: %s has other columns; moved to %s", path, aside.name)

    def _close_file(self) -> None:
        handle = self._file
        if handle is None:
            return
        self._file = None
        try:
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            handle.close()


def _day_bounds(now: float) -> tuple[float, float]:
    """[start, end) of the UTC day ``now`` falls in."""
    day = time.gmtime(now)
    start = float(calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0)))
    return start, start + _DAY


def _inspect_existing(path: Path, header: bytes) -> tuple[bool, str] | None:
    """(needs a header row, text that terminates a torn last row) for a file to append
    to; None when the file does not start with this release's header."""
    try:
        with open(path, "rb") as existing:
            size = existing.seek(0, os.SEEK_END)
            if size == 0:
                return True, ""
            existing.seek(0)
            if existing.read(len(header)) != header:
                return None
            start = max(0, size - _TAIL_SIZE)
            existing.seek(start)
            tail = existing.read()
    except FileNotFoundError:
        return True, ""
    typed = header.startswith(b"type,timeLogged,")
    return False, _repair_suffix(b"\r\n" + tail if start == 0 else tail, typed)


def _repair_suffix(tail: bytes, typed: bool = True) -> str:
    """What to append so the next row starts on a record boundary after a torn write.

    A crash can cut the last row anywhere, including inside a quoted field (which may
    itself contain CRLF). Rows whose first columns are ``type`` and ``timeLogged`` (the
    default) start with a type code and a timestamp, so the last such start in the tail
    delimits the last row (with other columns, the last line end does); an odd number of
    quotes after it means the cut fell inside a quoted field, which must be closed first.
    """
    last_row = 0
    for match in (_ROW_START if typed else _ANY_ROW_START).finditer(tail):
        last_row = match.start()
    if tail.count(b'"', last_row) % 2:
        return '"\r\n'
    if tail.endswith(b"\r\n"):
        return ""
    return "\n" if tail.endswith(b"\r") else "\r\n"
