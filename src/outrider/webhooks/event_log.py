"""``[event-log] file``: every event as one JSON object per line, appended.

The subscriber encodes each batch and keeps the text in memory; :meth:`flush` (the
daemon's once-a-second tick, and shutdown) hands it to the kernel with one write,
without fsync, like the accounting log: it is a report, the spool is the truth.
:meth:`reopen` (reload, SIGHUP) closes and reopens the path, so logrotate can move the
file away and signal the daemon.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from outrider.events.types import Event
from outrider.webhooks.payload import event_record, log_kind

log = logging.getLogger("outrider.webhooks")

FLUSH_BYTES = 1 << 16  # written at once past this, without waiting for the tick


class EventLogFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._parts: list[str] = []
        self._size = 0
        self._failing = False

    def handle(self, events: Sequence[Event]) -> None:
        parts = self._parts
        for event in events:
            kind = log_kind(event)
            if kind is not None:
                text = json.dumps(event_record(event, kind), separators=(",", ":"))
                parts.append(text)
                self._size += len(text) + 1
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._parts:
            return
        data = ("\n".join(self._parts) + "\n").encode()
        self._parts, self._size = [], 0
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            os.write(self._fd, data)
        except OSError as exc:
            if not self._failing:
                log.error(
                    "event log %s: cannot write: %s (events are lost until it works)",
                    self.path,
                    exc,
                )
            self._failing = True
            return
        if self._failing:
            log.info("event log %s: writing again", self.path)
            self._failing = False

    def reopen(self) -> None:
        """Flush, close, and open the path again at the next write (after logrotate)."""
        self.flush()
        self.close()

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
