"""Queue ids whose (empty) files already exist in the spool with a durable name.

Storing a message under a fresh name costs two flushes: the file's data, then the
directory that holds the new name. A store into a name reserved here costs one: the
name was made durable earlier, in a batch (many empty files, one directory fsync, done
by the committer while it has nothing else to do), so the store only writes and
fdatasyncs the file. One client sending messages one after the other in one session
waits for every flush, so this halves what it waits for.

The price is on recovery: an empty file is a reservation nobody used (removed), and a
store interrupted by a crash can leave a file whose body is cut short under its final
name; its client was never told 250, and recovery quarantines it like any damaged file.

Thread use: ``take`` and ``give_back`` run on event-loop threads, ``fill`` and
``discard_all`` on the committer thread; deque and set operations are atomic in CPython.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable

from outrider.message.ids import new_queue_id
from outrider.spool import recycle

__all__ = ["NamePool"]

TARGET = 64  # names kept ready per process: a burst of this many stores flushes once each
LOW = 16  # below this, ask the committer for more


class NamePool:
    """Durable empty files to store into, one per future message."""

    def __init__(
        self, directory: str, *, o_cloexec: int = 0, taker: recycle.Taker | None = None
    ) -> None:
        self._dir = directory
        self._taker = taker  # files of finished messages, taken first (spool.recycle)
        self.recycled = 0  # names made from recycled files
        self._flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | o_cloexec
        self._ready: deque[str] = deque()  # durable names, not handed out
        self._taken: set[str] = set()  # handed out, not stored yet
        self.wanted = False  # the committer should fill (set by take, cleared by fill)

    def take(self) -> str:
        """A queue id to store under: a reserved one if any is ready, else a fresh one."""
        try:
            queue_id = self._ready.popleft()
        except IndexError:
            self.wanted = True
            return new_queue_id()
        self._taken.add(queue_id)
        if len(self._ready) < LOW:
            self.wanted = True
        return queue_id

    def claim(self, queue_id: str) -> bool:
        """Whether ``queue_id`` is a reserved name handed out by :meth:`take` (the store
        then writes into it); claimed once."""
        try:
            self._taken.remove(queue_id)
        except KeyError:
            return False
        return True

    def give_back(self, queue_id: str) -> None:
        """A reserved id whose message was not stored (refused after it was taken): its
        empty file is used for the next message."""
        if self.claim(queue_id):
            self._ready.append(queue_id)

    def holds(self, queue_id: str) -> bool:
        """Whether ``queue_id`` is one of this pool's reserved names, stored into or not."""
        return queue_id in self._taken or queue_id in self._ready

    def missing(self) -> int:
        return max(0, TARGET - len(self._ready))

    def create(self, count: int, stop: Callable[[], bool]) -> list[str]:
        """Create up to ``count`` empty files (fewer when ``stop()`` turns true: other
        work arrived), recycled ones first. Their names are not durable until the caller
        syncs the directory and then calls :meth:`add`."""
        made: list[str] = []
        if self._taker is not None:
            made = self._taker.take(count, new_queue_id, stop)
            self.recycled += len(made)
            if made and stop():
                return made
        for _ in range(count - len(made)):
            queue_id = new_queue_id()
            try:
                os.close(os.open(os.path.join(self._dir, queue_id), self._flags, 0o600))
            except OSError:
                break  # full disk or the like: stores fall back to fresh names
            made.append(queue_id)
            if stop():
                break
        return made

    def add(self, names: list[str]) -> None:
        """Names whose directory entries are now durable."""
        self._ready.extend(names)

    def discard_all(self) -> int:
        """Remove every reserved file not stored into (at close); the count removed."""
        removed = 0
        names = list(self._ready) + list(self._taken)
        self._ready.clear()
        self._taken.clear()
        for queue_id in names:
            try:
                os.unlink(os.path.join(self._dir, queue_id))
            except OSError:
                continue
            removed += 1
        return removed
