"""Log handlers that write each record with one ``write(2)``: whole lines, several processes.

The delivery process and every receiver process append to the same ``outrider.log``
(and share one stderr). Python's stream handlers go through a buffered text layer that
may split a large record (a batch of mail lines) into several writes, which another
process's lines could then land between. These handlers encode the record and hand it
to the kernel at once: on a regular file opened with ``O_APPEND`` one write is placed
whole at the end, whatever other writers do; on a pipe or socket (stderr under a
supervisor or journald) records are cut at line ends into pieces of at most
``PIPE_BUF`` bytes, the size the kernel writes atomically.

:class:`LogFileHandler` reopens its file when logrotate has moved it away, noticed by a
``stat`` of the path at most once a second (not on every record: see
:data:`REOPEN_CHECK_SECONDS`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import stat
import time
from pathlib import Path

# How often the log file's path is looked at for a rotation. Measured on the 2-core test
# machine: a record costs ~4 µs with this check, ~8 µs with a stat on every record, ~11 µs
# with logging's WatchedFileHandler. Lines written in the second after a rotation go to
# the renamed file (logrotate's ``delaycompress`` leaves it alone until the next
# rotation), never lost.
REOPEN_CHECK_SECONDS = 1.0
FILE_MODE = 0o640


class FdHandler(logging.Handler):
    """Writes formatted records to a file descriptor, one record per write on files.

    A write that fails (a full disk, a closed pipe) loses that record; it is reported
    once on stderr, not once per record, and again when writing works again. The
    ``mirrors`` get the same bytes: stderr and the file share one formatting when their
    formats are the same (the delivery process formats a line per recipient)."""

    terminator = b"\n"

    def __init__(self, fd: int, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.fd = fd
        self._atomic = _is_regular(fd)
        self.failing = False
        self.mirrors: list[FdHandler] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.format(record).encode("utf-8", "backslashreplace") + self.terminator
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)  # a formatting bug: logging's report, with the record
            return
        self.deliver(data)
        for mirror in self.mirrors:
            mirror.deliver(data)

    def deliver(self, data: bytes) -> None:
        try:
            self.write(data)
        except OSError as exc:
            if not self.failing:
                self.failing = True
                self.report(
                    f"cannot write the daemon log to {self.name_for_humans()}: {exc}; "
                    "lines are lost until it works again"
                )
            return
        if self.failing:
            self.failing = False
            self.report(f"writing the daemon log to {self.name_for_humans()} again")

    def name_for_humans(self) -> str:
        return "stderr" if self.fd == 2 else f"fd {self.fd}"

    def report(self, text: str) -> None:
        if self.fd != 2:  # about stderr itself: nowhere left to say it
            with contextlib.suppress(OSError):
                os.write(2, f"outrider: {text}\n".encode())

    def write(self, data: bytes) -> None:
        if self._atomic or len(data) <= select.PIPE_BUF:
            _write_all(self.fd, data)
            return
        for piece in line_pieces(data, select.PIPE_BUF):
            _write_all(self.fd, piece)


class LogFileHandler(FdHandler):
    """Appends to ``path`` (created mode 0640), reopened after logrotate moves it."""

    def __init__(self, path: Path, level: int = logging.NOTSET) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open(path)
        super().__init__(fd, level)
        self.path = path
        self._identity = _identity(os.fstat(fd))
        self._next_check = time.monotonic() + REOPEN_CHECK_SECONDS

    def write(self, data: bytes) -> None:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + REOPEN_CHECK_SECONDS
            self.reopen_if_moved()
        super().write(data)

    def name_for_humans(self) -> str:
        return str(self.path)

    def reopen_if_moved(self) -> None:
        """Open the path again when it no longer names the file we write to."""
        try:
            current = _identity(os.stat(self.path))
        except FileNotFoundError:
            current = None
        if current == self._identity:
            return
        fd = _open(self.path)  # OSError: handleError reports it, the old fd stays
        old, self.fd = self.fd, fd
        self._identity = _identity(os.fstat(fd))
        os.close(old)

    def close(self) -> None:
        """Idempotent: a second close must not close whatever reused the fd number."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        super().close()


def line_pieces(data: bytes, limit: int) -> list[bytes]:
    """``data`` cut after newlines into pieces of at most ``limit`` bytes (a longer line
    is cut where it must)."""
    pieces: list[bytes] = []
    start = 0
    end = len(data)
    while end - start > limit:
        cut = data.rfind(b"\n", start, start + limit)
        cut = start + limit if cut < 0 else cut + 1
        pieces.append(data[start:cut])
        start = cut
    if start < end:
        pieces.append(data[start:])
    return pieces


def _open(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _is_regular(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False
