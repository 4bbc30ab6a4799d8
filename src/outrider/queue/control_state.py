"""State that must survive a restart: operator pauses, and the pushback remote servers
gave (backoff mode, disabled source IPs), so a restart does not hammer a provider that
asked us to slow down."""

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
    held_messages: set[str] = field(default_factory=set)  # queue ids (Postfix's hold queue)
    disabled_ips: set[str] = field(default_factory=set)  # source IPs the operator disabled
    backoff: dict[str, float] = field(default_factory=dict)  # queue name -> entered (epoch)
    disabled: dict[str, dict[str, float]] = field(default_factory=dict)  # dest -> vmta -> until
    # With [cluster]: the last change of each shared setting ("kind:name" -> [on, value,
    # at, node]), kept so that the newest change wins when Redis comes back or restarts.
    stamps: dict[str, list[object]] = field(default_factory=dict)

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
        try:
            return cls(
                paused_queues={str(q) for q in data.get("paused_queues", [])},
                paused_jobs={str(j) for j in data.get("paused_jobs", [])},
                held_messages={str(m) for m in data.get("held_messages", [])},
                disabled_ips={str(ip) for ip in data.get("disabled_ips", [])},
                backoff={str(k): float(v) for k, v in data.get("backoff", {}).items()},
                disabled={
                    str(dest): {str(v): float(u) for v, u in sources.items()}
                    for dest, sources in data.get("disabled", {}).items()
                },
                stamps={str(k): list(v) for k, v in data.get("stamps", {}).items()},
            )
        except (AttributeError, TypeError, ValueError) as exc:
            log.error("%s: malformed (%s); starting with nothing paused", path, exc)
            return cls()

    def save(self, state_dir: Path) -> None:
        """Atomic replace, fsynced: a pause acknowledged to the operator survives a crash."""
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / STATE_FILE
        tmp = state_dir / f".{STATE_FILE}.{os.getpid()}"
        payload = json.dumps(
            {
                "paused_queues": sorted(self.paused_queues),
                "paused_jobs": sorted(self.paused_jobs),
                "held_messages": sorted(self.held_messages),
                "disabled_ips": sorted(self.disabled_ips),
                "backoff": self.backoff,
                "disabled": {d: v for d, v in self.disabled.items() if v},
                **({"stamps": self.stamps} if self.stamps else {}),
            },
            indent=1,
            sort_keys=True,
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
