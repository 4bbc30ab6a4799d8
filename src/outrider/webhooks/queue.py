"""A webhook's durable queue: append-only segment files of JSON lines and a cursor.

Layout of the queue's directory::

    000000000001.jsonl   events, one JSON object per line, appended
    000000000002.jsonl   the segment being written once the first reached its size
    cursor               "SEGMENT OFFSET": everything before it was acknowledged

:meth:`append` writes a whole batch of lines with one ``write`` and one ``fsync``;
:meth:`ack` replaces the cursor (write, fsync, rename) and deletes the segments wholly
before it. A crash can leave a torn last line: it is cut off when the queue is opened
(it was never acknowledged to anyone, and the events it held were in the process's
memory only). A line that is not JSON (a disk error) is skipped by the reader.

Not thread-safe: the owner runs every call under one lock (in a worker thread, so an
fsync never stalls the event loop).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("outrider.webhooks")

_SEGMENT = re.compile(r"(\d{12})\.jsonl")
READ_CHUNK = 1 << 20  # most bytes read from a segment per read()
MAX_SEGMENT = 8 << 20


@dataclass(frozen=True, slots=True, order=True)
class Position:
    segment: int
    offset: int


def segment_name(number: int) -> str:
    return f"{number:012d}.jsonl"


def segment_size_for(max_bytes: int) -> int:
    """Segments small enough that dropping the oldest one frees a fair share of the cap."""
    return max(4096, min(MAX_SEGMENT, max_bytes // 8))


class DiskQueue:
    def __init__(self, directory: Path, *, max_bytes: int = 1 << 30, name: str = "") -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_size_for(max_bytes)
        self.name = name or self.dir.name
        self.sizes: dict[int, int] = {}  # segment -> bytes, oldest first
        self.cursor = Position(1, 0)
        self.pending = 0  # lines appended and not acknowledged
        self.dropped = 0  # lines dropped to keep under max_bytes
        self._open()

    # -- opening ----------------------------------------------------------------------------
    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        numbers = sorted(
            int(m.group(1)) for name in os.listdir(self.dir) if (m := _SEGMENT.fullmatch(name))
        )
        cursor = self._read_cursor()
        for number in numbers:
            if cursor is not None and number < cursor.segment:
                self._unlink(number)
            else:
                self.sizes[number] = os.path.getsize(self.dir / segment_name(number))
        if self.sizes:
            self._cut_torn_tail(max(self.sizes))
        first = min(self.sizes, default=None)
        if cursor is None or first is None or cursor.segment < first:
            start = first if first is not None else (cursor.segment if cursor else 1)
            cursor = Position(start, 0)
        self.cursor = cursor
        self.pending = sum(self._count_lines(n, cursor) for n in self.sizes)

    def _read_cursor(self) -> Position | None:
        try:
            segment, offset = (self.dir / "cursor").read_text().split()
            return Position(int(segment), int(offset))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning(
                "webhook %s: unreadable cursor (%s): sending the queue again", self.name, exc
            )
            return None

    def _cut_torn_tail(self, number: int) -> None:
        path = self.dir / segment_name(number)
        size = self.sizes[number]
        if size == 0:
            return
        with open(path, "rb+") as f:
            f.seek(max(0, size - READ_CHUNK))
            tail = f.read()
            if tail.endswith(b"\n"):
                return
            keep = size - len(tail) + tail.rfind(b"\n") + 1
            f.truncate(keep)
            os.fsync(f.fileno())
        log.warning("webhook %s: cut a torn last line off %s", self.name, path.name)
        self.sizes[number] = keep

    def _count_lines(self, number: int, cursor: Position) -> int:
        start = cursor.offset if number == cursor.segment else 0
        if number < cursor.segment:
            return 0
        with open(self.dir / segment_name(number), "rb") as f:
            f.seek(start)
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(READ_CHUNK), b""))

    # -- writing ----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return sum(self.sizes.values())

    def append(self, lines: list[bytes]) -> None:
        """Append lines (JSON without their newline) durably: one write, one fsync."""
        if not lines:
            return
        data = b"\n".join(lines) + b"\n"
        number = max(self.sizes, default=self.cursor.segment)
        if self.sizes.get(number, 0) >= self.segment_bytes:
            number += 1
        fd = os.open(self.dir / segment_name(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.sizes[number] = self.sizes.get(number, 0) + len(data)
        self.pending += len(lines)
        self._enforce_cap()

    def _enforce_cap(self) -> None:
        while self.size > self.max_bytes and len(self.sizes) > 1:
            oldest = min(self.sizes)
            lost = self._count_lines(oldest, self.cursor)
            self._unlink(oldest)
            del self.sizes[oldest]
            self.pending -= lost
            self.dropped += lost
            self._write_cursor(Position(min(self.sizes), 0))
            log.warning(
                "webhook %s: queue over max-queue-size (%d bytes): dropped the %d oldest events",
                self.name,
                self.max_bytes,
                lost,
            )

    # -- reading and acknowledging -------------------------------------------------------------
    def read(self, max_lines: int) -> tuple[list[bytes], Position]:
        """Up to ``max_lines`` lines from the cursor, and the position after the last one."""
        pos = self.cursor
        lines: list[bytes] = []
        while len(lines) < max_lines and pos.segment in self.sizes:
            if pos.offset >= self.sizes[pos.segment]:
                later = [n for n in self.sizes if n > pos.segment]
                if not later:
                    break
                pos = Position(min(later), 0)
                continue
            with open(self.dir / segment_name(pos.segment), "rb") as f:
                f.seek(pos.offset)
                chunk = f.read(min(READ_CHUNK, self.sizes[pos.segment] - pos.offset))
            offset = pos.offset
            for line in chunk.split(b"\n")[:-1]:  # the last piece: after the final newline
                offset += len(line) + 1
                lines.append(line)
                if len(lines) >= max_lines:
                    break
            if offset == pos.offset:  # a line longer than READ_CHUNK: skip it
                log.warning("webhook %s: skipped an oversized line", self.name)
                offset = self.sizes[pos.segment]
            pos = Position(pos.segment, offset)
        return lines, pos

    def ack(self, end: Position, count: int) -> None:
        """The ``count`` lines before ``end`` were delivered: move the cursor past them and
        delete the segments wholly before it."""
        if end <= self.cursor:  # dropped under the cap meanwhile
            return
        size = self.sizes.get(end.segment, 0)
        if end.offset >= size >= self.segment_bytes:  # a full segment, wholly sent
            end = Position(end.segment + 1, 0)
        self._write_cursor(end)
        self.pending = max(0, self.pending - count)
        for number in [n for n in self.sizes if n < end.segment]:
            self._unlink(number)
            del self.sizes[number]

    def _write_cursor(self, pos: Position) -> None:
        tmp = self.dir / "cursor.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{pos.segment} {pos.offset}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.dir / "cursor")
        self.cursor = pos

    def _unlink(self, number: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dir / segment_name(number))
