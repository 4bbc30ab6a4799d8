"""Operator state that must survive a restart: paused queues and paused jobs."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("outrider.queue")

STATE_FILE = "control.json"


@dataclass
class ControlState:
    paused_queues: set[str] = field(default_factory=set)  # queue names, destinations or domains
    paused_jobs: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, state_dir: Path) -> ControlState:
        path = state_dir / STATE_FILE
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            log.error("%s: unreadable (%s); starting with nothing paused", path, exc)
            return cls()
        return cls(
            paused_queues={str(q) for q in data.get("paused_queues", [])},
            paused_jobs={str(j) for j in data.get("paused_jobs", [])},
        )

    def save(self, state_dir: Path) -> None:
        """Atomic replace, fsynced: a pause acknowledged to the operator survives a crash."""
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / STATE_FILE
        tmp = state_dir / f".{STATE_FILE}.{os.getpid()}"
        payload = json.dumps(
            {"paused_queues": sorted(self.paused_queues), "paused_jobs": sorted(self.paused_jobs)},
            indent=1,
        ).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
