"""The daemon's control API: JSON lines over a Unix socket, for the console and tools.

One request per line, one reply per line. The ``outrider`` console commands
(:mod:`outrider.admin.cli`, documented in docs/operations.md) are built on these::

    {"cmd": "overview"}                                   show status
    {"cmd": "status"}                                     every queue's shaping state
    {"cmd": "queues", "domain": "", "vmta": "", "mode": "", "sort": "recipients", "max": 0}
    {"cmd": "topdomains", "max": 20}   {"cmd": "vmtas"}   {"cmd": "jobs"}
    {"cmd": "list", "queue": "", "rcpt": "", "job": "", "sender": "", "limit": 1000}
    {"cmd": "message", "id": "1K1N...", "body": false}
    {"cmd": "retry", "queue" | "id" | "rcpt": "...", "all": true}
    {"cmd": "delete", "queue" | "id" | "rcpt" | "job": "...", "bounce": false}
    {"cmd": "hold", "queue" | "id": "..."}                {"cmd": "release", ...}
    {"cmd": "pause", "queue": "example.org"}              {"cmd": "resume", ...}
    {"cmd": "pause-job", "job": "spring-sale"}            {"cmd": "resume-job", ...}
    {"cmd": "backoff", "queue": "example.org"}            {"cmd": "normal", ...}
    {"cmd": "disable-source", "ip": "192.0.2.10"}         {"cmd": "enable-source", ...}
    {"cmd": "reload"}                                     like SIGHUP, with the verdict
    {"cmd": "config", "effective": false}                 the running configuration
    {"cmd": "route", "address": "user@example.net", "vmta": ""}
    {"cmd": "cluster"}                                    show cluster ([cluster] only)

Replies are ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. A command about
something that does not exist (a queue, job, message or source that matches nothing, a
resume of what is not paused) answers an error naming it, never ``ok``; pausing a queue
or job with no mail yet is allowed (its mail is held when it comes) and says so in a
``note``. The socket is created mode 0600 in the state directory: only the daemon's
user may control it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from outrider.config.dump import dump
from outrider.queue import console_verbs as verbs
from outrider.queue.console import Console
from outrider.queue.operator import Operator

log = logging.getLogger("outrider.control")

MAX_REQUEST = 64 * 1024


LOOKUPS: dict[str, Callable[[Console, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "queues": verbs.show_queues,
    "topdomains": verbs.show_topdomains,
    "vmtas": verbs.show_vmtas,
    "jobs": verbs.show_jobs,
    "list": verbs.list_recipients,
    "message": verbs.show_message,
}
ACTIONS: dict[str, Callable[[Console, dict[str, Any]], dict[str, Any]]] = {
    "retry": verbs.retry,
    "delete": verbs.delete,
    "hold": verbs.hold,
    "release": verbs.release,
}


@dataclass(frozen=True, slots=True)
class DaemonHooks:
    """What only the daemon can answer: its overview (``show status``), a reload, and
    where mail for an address would go (``route``)."""

    overview: Callable[[], dict[str, Any]]
    reload: Callable[[], dict[str, Any]]
    route: Callable[[str, str | None], Awaitable[dict[str, Any]]]
    cluster: Callable[[], Awaitable[dict[str, Any]]] | None = None  # [cluster] only


async def handle_request(
    operator: Operator, request: dict[str, Any], hooks: DaemonHooks | None = None
) -> dict[str, Any]:
    """Run one control command (dispatch; no I/O beyond what the operator API does)."""
    cmd = request.get("cmd")
    try:
        if cmd == "cluster":
            if hooks is None or hooks.cluster is None:
                return {"ok": False, "error": "this node is not in a cluster ([cluster] redis)"}
            return {"ok": True, "cluster": await hooks.cluster()}
        if cmd in ("overview", "reload", "route"):
            if hooks is None:
                return {"ok": False, "error": f"{cmd} needs the daemon"}
            if cmd == "reload":
                return hooks.reload()
            if cmd == "route":
                return await _route(hooks, request)
            return {"ok": True, "status": hooks.overview()}
        if isinstance(cmd, str) and cmd in LOOKUPS:
            return await LOOKUPS[cmd](Console(operator.scheduler), request)
        if isinstance(cmd, str) and cmd in ACTIONS:
            return ACTIONS[cmd](Console(operator.scheduler), request)
        return _schedule_verb(operator, cmd, request)
    except verbs.BadRequest as exc:
        return {"ok": False, "error": str(exc)}


async def _route(hooks: DaemonHooks, request: dict[str, Any]) -> dict[str, Any]:
    address = verbs.text(request, "address")
    if not address:
        raise verbs.BadRequest("'address' (a recipient address) is required")
    try:
        answer = await hooks.route(address, verbs.text(request, "vmta") or None)
    except ValueError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "route": answer}


def _schedule_verb(operator: Operator, cmd: object, request: dict[str, Any]) -> dict[str, Any]:
    """The original verbs: status, pauses and modes."""
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
            known = operator.pause_queue(queue)
            if known:
                return {"ok": True}
            return {
                "ok": True,
                "note": f"nothing is queued for {queue} now: its mail will be held when it comes",
            }
        if cmd == "resume":
            if operator.resume_queue(queue):
                return {"ok": True}
            return {"ok": False, "error": f"queue {queue} is not paused"}
        changed = operator.set_mode(queue, "backoff" if cmd == "backoff" else "normal")
        if not changed:
            return {"ok": False, "error": f"no delivery queue matches {queue}"}
        return {"ok": True, "queues": changed}
    if cmd in ("pause-job", "resume-job"):
        job = request.get("job")
        if not isinstance(job, str) or not job:
            return {"ok": False, "error": "'job' (an X-Job value) is required"}
        if cmd == "pause-job":
            if operator.pause_job(job):
                return {"ok": True}
            return {
                "ok": True,
                "note": f"no mail of job {job} is queued now: it will be held when it comes",
            }
        if operator.resume_job(job):
            return {"ok": True}
        return {"ok": False, "error": f"job {job} is not paused"}
    if cmd in ("disable-source", "enable-source"):
        return _source_verb(operator, cmd, request)
    if cmd == "config":
        config = operator.ctx.config
        effective = verbs.flag(request, "effective")
        source = str(config.source) if config.source is not None else None
        return {"ok": True, "source": source, "config": dump(config, effective=effective)}
    return {"ok": False, "error": f"unknown command {cmd!r}"}


def _source_verb(operator: Operator, cmd: str, request: dict[str, Any]) -> dict[str, Any]:
    ip = verbs.text(request, "ip")
    if not ip:
        return {"ok": False, "error": "'ip' (a source address) is required"}
    if cmd == "disable-source":
        vmtas = operator.disable_source(ip)
        if not vmtas:
            return {"ok": False, "error": f"no virtual MTA sends from {ip}"}
        return {"ok": True, "vmtas": vmtas}
    if operator.enable_source(ip):
        return {"ok": True}
    return {"ok": False, "error": f"source {ip} is not disabled"}


class ControlServer:
    def __init__(self, path: str, operator: Operator, hooks: DaemonHooks | None = None) -> None:
        self.path = path
        self.operator = operator
        self.hooks = hooks
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
                    reply = await handle_request(self.operator, request, self.hooks)
                except ValueError as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                except Exception as exc:  # a failed command must not end the server
                    log.exception("control command failed")
                    reply = {"ok": False, "error": f"command failed: {exc}"}
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
