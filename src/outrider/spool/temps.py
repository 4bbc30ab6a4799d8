"""Temporary files in the spool directory: their names, which of them this process is
writing, and the small helpers that write them.

A temp file is named ``tmp.<pid>.<rest>``: a store in progress (``<rest>`` is the queue
id) or a message being received (``<n>.spill``, see :mod:`outrider.spool.spill`). The
in-flight set is shared by every :class:`~outrider.spool.disk.DiskSpool` and spill file
of the process (several may use one directory), so that recovery never deletes what
this process still writes; a temp file of a process that is gone is abandoned.
"""

from __future__ import annotations

import os
import threading

TMP_PREFIX = "tmp."
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

_paths: set[str] = set()
_lock = threading.Lock()


def add(path: str) -> None:
    with _lock:
        _paths.add(path)


def discard(path: str) -> None:
    with _lock:
        _paths.discard(path)


def contains(path: str) -> bool:
    with _lock:
        return path in _paths


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (``pwrite`` may write less than asked)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
