"""Files of finished messages, kept to hold the next messages.

Making a file is the dearest step of a store that is not a write: the file system
allocates an inode, and ext4 without a journal skips every inode deleted in the last
5-35 s as it looks for a free one, so under a steady flow each new file costs more the
more files were just removed (measured in ``bench/relay.sh``: the ``openat`` of new
reserved names took 23% of the receiver processes' CPU, the ``unlink`` of delivered
messages 10% of the delivery process's). A spool that removes as many files as it makes
need not do either: the process that removes a finished message empties its file (so
the bin holds inodes, not disk space: a full disk frees up as deliveries finish) and
renames it into :data:`RECYCLE_DIR` (at most :data:`CAP` of them wait there), and a
process that reserves names (:mod:`outrider.spool.names`) takes its files from there
before it makes new ones.

Taking one is three steps, so that a recycled file never shows under a queue id while
it could still hold its old message: rename it to ``claim.<pid>.<new id>`` inside the
bin (only one taker can), truncate it again (which also stamps its modification time,
so recovery treats it as the fresh empty reservation it now is), then link it under the
new queue id (``link`` never replaces a file) and drop the claim name. Recovery leaves
the bin's files for reuse and removes claim names a crash left. A store without a
reserved name (the pool ran dry under load) claims a file the same way as its temp file,
writes and syncs it there, then links it under its queue id.

Crash safety is that of an unlink: the rename into the bin, like the unlink it
replaces, is made durable by the next directory sync. On a file system that does not
order metadata (ext4 without a journal) a power loss can undo truncations that no sync
covered; a reserved name may then hold another message's envelope. It is never
delivered as that name: a store refuses to write over content (it replaces the file),
orphan adoption skips a file whose envelope names another queue id, and recovery
quarantines it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections import deque
from collections.abc import Callable

from outrider.spool.temps import O_CLOEXEC

__all__ = ["CAP", "CLAIM_PREFIX", "RECYCLE_DIR", "Bin", "Taker", "clean"]

RECYCLE_DIR = ".recycle"  # not a valid queue id, so no message can collide with it
CAP = 1024  # empty files waiting in the bin, across processes (inodes, no data)
CLAIM_PREFIX = "claim."
_RECHECK = 16  # removals that unlink before a full bin is counted again
_ATTEMPTS = 8  # names of one listing tried before a claim gives up (others took them)


class Bin:
    """The removing side: moves a finished message's file into the bin while there is
    room (counted with one listing when the last count says it is full)."""

    def __init__(self, spool_dir: str) -> None:
        self.dir = os.path.join(spool_dir, RECYCLE_DIR)
        self._room = 0  # files the bin takes before it is counted again
        self._skip = 0  # removals left to unlink before counting again

    def put(self, path: str, name: str) -> bool:
        """Empty ``path`` (the file of finished message ``name``: its space is free at
        once, as after an unlink) and move it into the bin; False when the bin is full
        or the move failed (the caller unlinks the file)."""
        if self._room <= 0 and not self._refill():
            return False
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return False  # only files: the caller's unlink refuses anything else
            os.truncate(path, 0)
            os.rename(path, os.path.join(self.dir, name))
        except FileNotFoundError:
            if not os.path.isdir(self.dir):
                _make_dir(self.dir)
            return False  # the caller's unlink tells a message already gone
        except OSError:
            return False
        self._room -= 1
        return True

    def _refill(self) -> bool:
        if self._skip > 0:
            self._skip -= 1
            return False
        self._room = CAP - count(self.dir)
        if self._room <= 0:
            self._skip = _RECHECK
            return False
        return True


def count(directory: str) -> int:
    """Files waiting in the bin (claims in progress included); a missing bin is made."""
    try:
        with os.scandir(directory) as entries:
            return sum(1 for _ in entries)
    except FileNotFoundError:
        _make_dir(directory)
        return 0
    except OSError:
        return CAP  # cannot tell: treat as full, files are unlinked as before


class Taker:
    """The taking side, one per process and spool: claims files from the bin, for
    reserved names (:meth:`take`) and as the temp file of a store (:meth:`claim`).
    Thread-safe: the spool's committer and its sync pool call it at once."""

    def __init__(self, spool_dir: str) -> None:
        self._spool = spool_dir
        self.dir = os.path.join(spool_dir, RECYCLE_DIR)
        self._pid = os.getpid()
        self._listed: deque[str] = deque()  # names seen in the bin, maybe taken since
        self._lock = threading.Lock()

    def claim(self, queue_id: str) -> tuple[str, int] | None:
        """A file from the bin, emptied, under the claim name ``claim.<pid>.<queue_id>``
        (only this process will touch it) and open for writing; None if the bin has
        none. The caller links it where it belongs and removes the claim name."""
        path = os.path.join(self.dir, f"{CLAIM_PREFIX}{self._pid}.{queue_id}")
        for _ in range(_ATTEMPTS):
            old = self._next()
            if old is None:
                return None
            try:
                os.rename(os.path.join(self.dir, old), path)
            except OSError:
                self._forget()  # another process took it: its listing is stale, list again
                continue
            try:
                # O_TRUNC also stamps the modification time: see the module docstring.
                return path, os.open(path, os.O_WRONLY | os.O_TRUNC | O_CLOEXEC)
            except OSError:
                _unlink_quietly(path)
                return None
        return None

    def take(self, count: int, new_name: Callable[[], str], stop: Callable[[], bool]) -> list[str]:
        """Up to ``count`` recycled files, each emptied and linked under a fresh queue id;
        fewer when the bin runs out or ``stop()`` turns true. Like new files, their
        names are durable only once the caller has synced the spool directory."""
        made: list[str] = []
        while len(made) < count:
            queue_id = new_name()
            claimed = self.claim(queue_id)
            if claimed is None:
                break
            path, fd = claimed
            os.close(fd)
            try:
                os.link(path, os.path.join(self._spool, queue_id))  # never replaces a file
            except OSError:
                _unlink_quietly(path)
                continue
            _unlink_quietly(path)
            made.append(queue_id)
            if stop():
                break
        return made

    def _forget(self) -> None:
        with self._lock:
            self._listed.clear()

    def _next(self) -> str | None:
        with self._lock:
            if not self._listed:
                try:
                    with os.scandir(self.dir) as entries:
                        names = [e.name for e in entries if not e.name.startswith(CLAIM_PREFIX)]
                except OSError:
                    return None
                # Takers in other processes start elsewhere in the listing.
                start = self._pid % len(names) if names else 0
                self._listed.extend(names[start:] + names[:start])
            return self._listed.popleft() if self._listed else None


def clean(spool_dir: str, alive: Callable[[int], bool]) -> int:
    """Remove the claim names of processes that are gone (a claim a crash cut short: the
    file may be empty, linked under a queue id, or still hold its old message); the
    count. The bin's other files stay for reuse."""
    directory = os.path.join(spool_dir, RECYCLE_DIR)
    try:
        with os.scandir(directory) as entries:
            claims = [e.name for e in entries if e.name.startswith(CLAIM_PREFIX)]
    except OSError:
        return 0
    removed = 0
    for name in claims:
        try:
            pid = int(name.split(".", 2)[1])
        except (IndexError, ValueError):
            pid = 0
        if pid and alive(pid):
            continue  # in progress
        removed += _unlink_quietly(os.path.join(directory, name))
    return removed


def _make_dir(directory: str) -> None:
    # Made by another process meanwhile, or impossible: files are unlinked as before.
    with contextlib.suppress(OSError):
        os.mkdir(directory, 0o700)


def _unlink_quietly(path: str) -> int:
    try:
        os.unlink(path)
    except OSError:
        return 0
    return 1
