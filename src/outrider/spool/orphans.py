"""Finding stored messages nobody scheduled: a receiver died, or its hand-off channel
broke, between the durable store and the hand-off to the delivery process.

The delivery process knows every message it schedules; a message file in the spool
that it does not know is either on its way (a live receiver stored it a moment ago and
its hand-off frame is in flight) or an orphan. :func:`find_orphans` tells them apart by
age: only files older than ``min_age`` seconds are taken. The scan only reads, never
repairs (no truncation, no quarantine: live files are being appended to), and skips
what is not a fresh receiver's message: temporary files, empty files (names a receiver
reserved to store into, :mod:`outrider.spool.names`), DSNs (``<id>-<kind>``, which the
delivery process stores and holds itself), finished messages.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from outrider.message.envelope import Envelope
from outrider.spool.codec import (
    CodecError,
    apply_records,
    check_header,
    decode_envelope,
    decode_prefix,
)

__all__ = ["find_orphans"]

log = logging.getLogger("outrider.spool")

_HEAD_READ = 64 * 1024
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def find_orphans(
    directory: Path | str, known: Callable[[str], bool], min_age: float, *, now: float | None = None
) -> list[Envelope]:
    """Envelopes of message files not ``known`` and at least ``min_age`` seconds old.

    Blocking (directory scan and file reads): run it in a thread. ``known`` is called
    from that thread, so it must only read (a dict membership test)."""
    now = time.time() if now is None else now
    found: list[Envelope] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith((".", "tmp.")) or "-" in name or known(name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                stat = entry.stat(follow_symlinks=False)
                if stat.st_size == 0 or now - stat.st_mtime < min_age:
                    continue  # a reserved name (spool.names), or too fresh to judge
            except FileNotFoundError:
                continue
            envelope = _read(entry.path, name)
            if envelope is not None and not envelope.is_done:
                found.append(envelope)
    return found


def _read(path: str, name: str) -> Envelope | None:
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except FileNotFoundError:
        return None  # delivered and removed meanwhile
    except OSError as exc:
        log.error("spool: cannot read %s: %s", path, exc)
        return None
    try:
        head = os.pread(fd, _HEAD_READ, 0)
        prefix = decode_prefix(head)
        if len(head) < prefix.body_offset:
            head += os.pread(fd, prefix.body_offset - len(head), len(head))
        envelope = decode_envelope(check_header(head, prefix))
        if envelope.queue_id != name:
            raise CodecError(f"file holds queue id {envelope.queue_id!r}")
        size = os.fstat(fd).st_size
        if size > prefix.tail_offset:
            apply_records(envelope, os.pread(fd, size - prefix.tail_offset, prefix.tail_offset))
        return envelope
    except (CodecError, OSError) as exc:
        # Left for the recovery at the next start, which repairs or quarantines it.
        log.error("spool: %s is unscheduled and unreadable (%s); left for recovery", name, exc)
        return None
    finally:
        os.close(fd)
