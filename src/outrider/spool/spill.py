"""A message too big to hold in memory, written into the spool as it arrives.

Past :data:`~outrider.spool.base.IN_MEMORY_LIMIT` octets of content, the receiving side
keeps only the header section in memory (header completion and the message checks read
nothing else) and appends the rest, piece by piece, to a temporary file in the spool
directory, ``tmp.<pid>.<n>.spill``. The pieces are written at an offset that leaves room
(:attr:`SpillFile.reserve`) for what a spool file holds before the body: the prefix, the
envelope and the completed header section. Storing the message writes those into the
room, syncs the file and links it under its queue id, so the tail is neither copied nor
read again (see :meth:`outrider.spool.disk.DiskSpool.store`).

Writes run in the event loop's default executor, one at a time per file: the receiving
session waits for each with reading paused, so a slow disk slows its client down rather
than filling memory. The tail's length, CRC-32 and whether it is all ASCII are kept as it
is written, for the store and for header completion.

The file is removed when its message is refused or abandoned (:meth:`SpillFile.discard`,
which waits for a write in flight); after a crash, recovery removes it as the temp file
of a process that is gone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import zlib
from dataclasses import dataclass

from outrider.spool import temps
from outrider.spool.base import SpoolError, error_from_os

log = logging.getLogger("outrider.spool")

SPILL_SUFFIX = ".spill"  # "." cannot occur in a queue id: never a store's temp name
# Room kept before the tail beyond the header section itself: prefix, envelope JSON, the
# Received field and added headers. An envelope too big for it (hundreds of recipients)
# makes the store copy the tail into a new file instead (in the kernel).
SPILL_ROOM = 64 * 1024

_serial = itertools.count(1)


class SpillFile:
    """The tail of one message being received; see the module docstring."""

    def __init__(self, directory: str, head_len: int, *, room: int = SPILL_ROOM) -> None:
        name = f"{temps.TMP_PREFIX}{os.getpid()}.{next(_serial)}{SPILL_SUFFIX}"
        self.path = os.path.join(directory, name)
        self.reserve = head_len + room  # file offset of the tail's first octet
        self.size = 0  # tail octets written
        self.crc = 0  # CRC-32 of those octets
        self.ascii = True  # no octet of the tail is 8-bit
        self.error: SpoolError | None = None  # the write that failed; the store raises it
        self._fd = -1
        self._done = False  # discarded, or handed to the store
        # Set by discard() at once, while the removal itself waits for the executor: a
        # store or write that comes after the discard fails or is skipped, whatever the
        # executor has got round to.
        self._discarded = False
        self._lock = threading.Lock()  # one file operation at a time

    def write(self, data: bytes) -> asyncio.Future[None]:
        """Append ``data`` off the event loop: the returned future is done when it is
        written (await it before the next write). It never fails: a failure is kept in
        :attr:`error` (later writes are skipped) and makes the store fail with its reply.
        A future, not a coroutine, so the write runs even if nobody waits for it."""
        loop = asyncio.get_running_loop()
        if not (self._done or self._discarded or self.error is not None or not data):
            try:
                return loop.run_in_executor(None, self._append, data)
            except RuntimeError as exc:  # the executor is shut down: the process stops
                self.error = SpoolError(f"spill write failed: {exc}")
        done: asyncio.Future[None] = loop.create_future()
        done.set_result(None)
        return done

    def _append(self, data: bytes) -> None:
        with self._lock:
            if self._done or self.error is not None:
                return
            try:
                if self._fd < 0:
                    self._fd = self._create()
                temps.pwrite_all(self._fd, data, self.reserve + self.size)
            except OSError as exc:
                self.error = error_from_os("store", exc)
                return
            except Exception as exc:  # a bug: fail this message, never the session
                log.exception("spill write to %s failed", self.path)
                self.error = SpoolError(f"spill write failed: {exc!r}")
                return
            self.size += len(data)
            self.crc = zlib.crc32(data, self.crc)
            if self.ascii:
                self.ascii = data.isascii()

    def _create(self) -> int:
        temps.add(self.path)
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | temps.O_CLOEXEC, 0o600)
        except OSError:
            temps.discard(self.path)
            raise

    def discard(self) -> None:
        """Remove the file, once a write in flight is done; idempotent. From the event
        loop the removal runs in the executor, so the loop never waits for it."""
        if self._done:
            return
        self._discarded = True
        try:
            asyncio.get_running_loop().run_in_executor(None, self._remove)
        except RuntimeError:  # no running loop, or its executor is shut down
            self._remove()

    def _remove(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            fd, self._fd = self._fd, -1
        if fd >= 0:
            self._unlink(fd)

    def _unlink(self, fd: int) -> None:
        try:
            os.close(fd)
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            log.exception("spool: cannot remove %s", self.path)
        finally:
            temps.discard(self.path)

    def detach(self) -> int:
        """Hand the file to the store: its descriptor, open for reading and writing. The
        caller closes it and links or removes :attr:`path`. Raises the error of a failed
        write (the file is removed), or :class:`SpoolError` when it was discarded."""
        with self._lock:
            if self._done or self._discarded:
                raise SpoolError("spilled content was discarded")
            self._done = True
            fd, self._fd = self._fd, -1
            error = self.error
        if error is not None:
            if fd >= 0:
                self._unlink(fd)
            raise error
        if fd < 0:  # nothing was written: an empty tail
            fd = self._create()
        return fd


@dataclass(frozen=True, slots=True)
class SpilledBody:
    """Content whose first octets, ``head``, are in memory and the rest in ``tail``.

    As received, ``head`` is the header section (up to the CRLF of its last field) and
    the tail starts with the empty line; once completed (:mod:`outrider.intake.finish`),
    ``head`` also holds the Received field and any added headers."""

    head: bytes
    tail: SpillFile

    @property
    def size(self) -> int:
        return len(self.head) + self.tail.size

    def discard(self) -> None:
        self.tail.discard()
