"""The daemon's internal control API: JSON lines over a Unix socket.

One request per line, one reply per line::

    {"cmd": "status"}
    {"cmd": "pause", "queue": "example.org"}      {"cmd": "resume", "queue": "example.org"}
    {"cmd": "pause-job", "job": "spring-sale"}     {"cmd": "resume-job", "job": "spring-sale"}
    {"cmd": "backoff", "queue": "example.org"}     {"cmd": "normal", "queue": "example.org"}

Replies are ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. The socket is
created mode 0600 in the state directory: only the daemon's user may control it. The
admin CLI and HTTP API are built on these same calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import Any

from outrider.queue.operator import Operator

log = logging.getLogger("outrider.control")

MAX_REQUEST = 64 * 1024


def handle_request(operator: Operator, request: dict[str, Any]) -> dict[str, Any]:
    """Run one control command (pure dispatch; no I/O beyond what the operator API does)."""
    cmd = request.get("cmd")
    if cmd == "status":
        return {"ok": True, "status": operator.status()}
    if cmd in ("pause", "resume", "backoff", "normal"):
        queue = request.get("queue")
        if not isinstance(queue, str) or not queue:
            return {
                "ok": False,
                "error": "'queue' (a queue name, destination or domain) is required",
            }
        if cmd == "pause":
            operator.pause_queue(queue)
            return {"ok": True}
        if cmd == "resume":
            return {"ok": operator.resume_queue(queue)}
        changed = operator.set_mode(queue, "backoff" if cmd == "backoff" else "normal")
        return {"ok": True, "queues": changed}
    if cmd in ("pause-job", "resume-job"):
        job = request.get("job")
        if not isinstance(job, str) or not job:
            return {"ok": False, "error": "'job' (an X-Job value) is required"}
        if cmd == "pause-job":
            operator.pause_job(job)
            return {"ok": True}
        return {"ok": operator.resume_job(job)}
    return {"ok": False, "error": f"unknown command {cmd!r}"}


class ControlServer:
    def __init__(self, path: str, operator: Operator) -> None:
        self.path = path
        self.operator = operator
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(
                self._client, path=self.path, limit=MAX_REQUEST
            )
        finally:
            os.umask(old)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("a JSON object is required")
                    reply = handle_request(self.operator, request)
                except ValueError as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
