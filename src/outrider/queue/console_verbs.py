"""The console's control-socket verbs: request fields in, :class:`Console` calls, replies out.

Each handler checks its fields and answers ``{"ok": true, ...}`` or ``{"ok": false,
"error": "..."}``; a command that matches nothing says so rather than answering ok.
"""

from __future__ import annotations

from typing import Any

from outrider.queue.console import Console
from outrider.queue.inventory import Selector
from outrider.queue.summary import domain_views, job_views, queue_views, vmta_views

Reply = dict[str, Any]
SORTS = ("recipients", "age", "size")
DEFAULT_LIST_LIMIT = 1000


class BadRequest(ValueError):
    """A request field is missing or malformed; the message names it."""


def text(request: dict[str, Any], name: str) -> str:
    value = request.get(name, "")
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string")
    return value.strip()


def number(request: dict[str, Any], name: str, default: int) -> int:
    value = request.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"'{name}' must be a whole number, 0 or more")
    return value


def flag(request: dict[str, Any], name: str) -> bool:
    value = request.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false")
    return value


def selector(request: dict[str, Any], allowed: tuple[str, ...]) -> Selector:
    """The recipients a command is about; exactly what ``allowed`` names may be given,
    and at least one of them (``all`` must be given explicitly)."""
    fields = {name: text(request, name) for name in ("queue", "id", "rcpt", "job", "sender")}
    everything = flag(request, "all") if "all" in allowed else False
    given = [name for name, value in fields.items() if value] + (["all"] if everything else [])
    extra = [name for name in given if name not in allowed]
    if extra:
        raise BadRequest(f"'{extra[0]}' is not accepted here (use one of {', '.join(allowed)})")
    if not given:
        raise BadRequest(f"one of {', '.join(repr(a) for a in allowed)} is required")
    return Selector(
        queue=fields["queue"],
        message=fields["id"],
        rcpt=fields["rcpt"],
        job=fields["job"],
        sender=fields["sender"],
        everything=everything,
    )


def describe(sel: Selector) -> str:
    parts = [
        f"queue {sel.queue}" if sel.queue else "",
        f"message {sel.message}" if sel.message else "",
        f"recipient {sel.rcpt}" if sel.rcpt else "",
        f"job {sel.job}" if sel.job else "",
        f"sender {sel.sender}" if sel.sender else "",
    ]
    return ", ".join(p for p in parts if p) or "the whole queue"


async def show_queues(console: Console, request: dict[str, Any]) -> Reply:
    sort = text(request, "sort") or "recipients"
    if sort not in SORTS:
        raise BadRequest(f"'sort' must be one of {', '.join(SORTS)}")
    views = queue_views(
        await console.rows(),
        console.live(),
        console.ctx.clock(),
        domain=text(request, "domain"),
        vmta=text(request, "vmta"),
        mode=text(request, "mode"),
        sort=sort,
        limit=number(request, "max", 0),
    )
    return {"ok": True, "queues": views}


async def show_topdomains(console: Console, request: dict[str, Any]) -> Reply:
    views = domain_views(await console.rows(), console.ctx.clock(), number(request, "max", 20))
    return {"ok": True, "domains": views}


async def show_vmtas(console: Console, request: dict[str, Any]) -> Reply:
    ctx = console.ctx
    sources = {name: v.source_ip for name, v in ctx.config.virtual_mtas.items()}
    views = vmta_views(await console.rows(), console.live(), sources, ctx.control.disabled_ips)
    return {"ok": True, "vmtas": views}


async def show_jobs(console: Console, request: dict[str, Any]) -> Reply:
    return {"ok": True, "jobs": job_views(await console.rows(), console.ctx.control.paused_jobs)}


async def list_recipients(console: Console, request: dict[str, Any]) -> Reply:
    sel = Selector(
        queue=text(request, "queue"),
        rcpt=text(request, "rcpt"),
        job=text(request, "job"),
        sender=text(request, "sender"),
        message=text(request, "id"),
    )
    limit = number(request, "limit", DEFAULT_LIST_LIMIT)
    rows = await console.rows(sel)
    rows.sort(key=lambda r: (r.received_at, r.queue_id, r.rcpt))
    shown = rows[:limit] if limit else rows
    return {"ok": True, "total": len(rows), "recipients": [r.as_json() for r in shown]}


async def show_message(console: Console, request: dict[str, Any]) -> Reply:
    queue_id = text(request, "id")
    if not queue_id:
        raise BadRequest("'id' (a queue id) is required")
    detail = await console.message(queue_id, body=flag(request, "body"))
    if detail is None:
        return {"ok": False, "error": f"no queued message {queue_id}"}
    return {"ok": True, "message": detail}


def retry(console: Console, request: dict[str, Any]) -> Reply:
    sel = selector(request, ("queue", "id", "rcpt", "all"))
    result = console.retry(sel)
    if not result.matched:
        return {"ok": False, "error": f"no queued mail for {describe(sel)}"}
    return {"ok": True, "retried": result.changed, "matched": result.matched}


def delete(console: Console, request: dict[str, Any]) -> Reply:
    sel = selector(request, ("queue", "id", "rcpt", "job"))
    result = console.delete(sel, bounce=flag(request, "bounce"))
    if not result.matched:
        return {"ok": False, "error": f"no queued mail for {describe(sel)}"}
    return {"ok": True, "deleted": result.changed, "busy": result.busy}


def hold(console: Console, request: dict[str, Any]) -> Reply:
    sel = selector(request, ("queue", "id"))
    result = console.hold(sel)
    if not result.matched:
        return {"ok": False, "error": f"no queued message for {describe(sel)}"}
    return {"ok": True, "held": result.changed, "matched": result.matched}


def release(console: Console, request: dict[str, Any]) -> Reply:
    sel = selector(request, ("queue", "id"))
    result = console.release(sel)
    if not result.changed:
        return {"ok": False, "error": f"no held message for {describe(sel)}"}
    return {"ok": True, "released": result.changed}
