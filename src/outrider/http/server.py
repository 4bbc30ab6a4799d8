"""The HTTP listener: aiohttp in the daemon's own event loop, one catch-all handler.

Every request is routed by :func:`outrider.http.api.match`, checked by
:func:`outrider.http.access.decide`, parsed by :mod:`outrider.http.params` and answered
by the control socket's own :func:`outrider.queue.control.handle_request` (or one of the
few handlers below for what has no control verb: whoami, traffic, queue detail, events,
OpenAPI, metrics, the monitor's files, and message injection, which goes to the intake
(:mod:`outrider.inject`)).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from outrider import __version__
from outrider.config.model import Config
from outrider.events.bus import EventBus
from outrider.http import access, openapi, params, sse, static_files, suppressions
from outrider.http.api import Match, Operation, match
from outrider.http.metrics import LatencyHistogram, Snapshot, render
from outrider.http.replies import Answer, answer, error_body
from outrider.http.tokens import TokenCache
from outrider.http.traffic import per_minute
from outrider.inject.request import InjectError
from outrider.inject.submit import prepare_body, submit_all
from outrider.intake.core import Intake
from outrider.queue.control import DaemonHooks, handle_request
from outrider.queue.operator import Operator
from outrider.queue.summary import iso
from outrider.runtime.stats import TrafficCounters
from outrider.suppression.store import SuppressionError, SuppressionStore
from outrider.unsubscribe import page as unsubscribe_page
from outrider.unsubscribe.apply import apply_unsubscribe
from outrider.unsubscribe.step import UnsubscribeStep
from outrider.unsubscribe.token import TokenError, read_token

log = logging.getLogger("outrider.http")

JSON = "application/json"
RECENT_REPLIES = 10
DETAIL_SCAN = 500  # queued recipients read for a queue's recent replies
SHUTDOWN_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class HttpContext:
    """What the HTTP layer reads from the daemon."""

    config: Callable[[], Config]  # the running config (follows reloads)
    operator: Operator
    hooks: DaemonHooks
    traffic: TrafficCounters
    bus: EventBus
    clock: Callable[[], float]
    started: float
    suppression: SuppressionStore | None = None  # the daemon's connection to the list
    # where POST /api/v1/messages submits (the delivery process's API intake); None: 503
    intake: Intake | None = None
    # the running [unsubscribe] step (its secret); None: /unsubscribe/... answers 404
    unsubscribe: Callable[[], UnsubscribeStep | None] = lambda: None


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False),
        content_type=JSON,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


class HttpServer:
    def __init__(self, ctx: HttpContext) -> None:
        self.ctx = ctx
        settings = ctx.config().http
        self.tokens = TokenCache(settings.tokens_file, on_error=self._token_file_error)
        self.latency = LatencyHistogram()
        self.stream = sse.EventStream(ctx.bus.subscribe, ctx.bus.unsubscribe)
        self._openapi: bytes | None = None
        self._runner: web.AppRunner | None = None
        self.handlers: dict[
            str, Callable[[web.Request, Operation, dict[str, Any]], Awaitable[web.StreamResponse]]
        ] = {
            "whoami": self._whoami,
            "traffic": self._traffic,
            "queue_detail": self._queue_detail,
            "events": self._events,
            "openapi": self._openapi_doc,
            "metrics": self._metrics,
            "static": self._static,
            "suppressions_list": self._suppressions,
            "suppression_get": self._suppressions,
            "suppressions_add": self._suppressions,
            "suppression_delete": self._suppressions,
            "inject": self._inject,
            "unsubscribe_page": self._unsubscribe,
            "unsubscribe": self._unsubscribe,
        }

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        settings = self.ctx.config().http
        assert settings.address is not None
        host, port = settings.address
        self.ctx.bus.subscribe(self.latency)
        app = web.Application(client_max_size=settings.max_request_size)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise RuntimeError(
                f"[http] address {host}:{port}: cannot listen: {exc.strerror or exc}"
            ) from None
        log.info("HTTP API listening on %s:%d", host, port)

    async def stop(self) -> None:
        self.stream.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
        with contextlib.suppress(ValueError):
            self.ctx.bus.unsubscribe(self.latency)

    def _token_file_error(self, message: str) -> None:
        log.error("HTTP tokens: %s; no token is accepted until it is fixed", message)

    # -- dispatch --------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        found: Match = match(request.method, request.raw_path)
        if found.operation is None:
            if found.status == 405:
                return json_response(
                    405,
                    error_body(f"{request.method} is not allowed here"),
                    {"Allow": ", ".join(found.allowed)},
                )
            return json_response(404, error_body(f"no such path {request.path}"))
        op = found.operation
        config = self.ctx.config()
        if op.role != "public":
            verdict = access.decide(
                method=request.method,
                client_ip=request.remote or "",
                headers=request.headers,
                needs=op.role,
                admin_networks=config.http.admin_networks,
                monitor_networks=config.http.monitor_networks,
                token_role=self.tokens.role,
                server_names=(config.server.hostname,),
            )
            if verdict.status != 200:
                extra = (
                    {"WWW-Authenticate": 'Bearer realm="outrider"'} if verdict.status == 401 else {}
                )
                return json_response(verdict.status, error_body(verdict.error), extra)
            request["role"] = verdict.role
        if op.form_body:
            return await self.handlers[op.handler](request, op, dict(found.path_params))
        if op.body_schema:  # the handler parses its own (large) body
            return await self._with_raw_body(request, op, config.http.max_request_size)
        try:
            body = await self._body(request, config.http.max_request_size)
            values = params.values(op, found.path_params, request.query, body)
        except params.FieldError as exc:
            return json_response(400, error_body(str(exc), exc.field))
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(config.http.max_request_size)
        except _TooLarge:
            return self._too_large(config.http.max_request_size)
        if op.handler:
            return await self.handlers[op.handler](request, op, values)
        return self._answer(op, await self._control(params.control_request(op, values)))

    async def _body(self, request: web.Request, limit: int) -> Any:
        if request.method in ("GET", "HEAD"):
            return None
        if request.content_length is not None and request.content_length > limit:
            raise _TooLarge
        data = await request.read()
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise params.FieldError(f"the request body is not JSON: {exc}") from None

    async def _with_raw_body(
        self, request: web.Request, op: Operation, limit: int
    ) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > limit:
            return self._too_large(limit)
        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(limit)
        request["raw_body"] = data
        return await self.handlers[op.handler](request, op, {})

    def _too_large(self, limit: int) -> web.Response:
        return json_response(413, error_body(f"request body larger than {limit} octets"))

    async def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return await handle_request(self.ctx.operator, request, self.ctx.hooks)
        except Exception as exc:  # as the control socket: a failed command must not end the server
            log.exception("HTTP command %s failed", request.get("cmd"))
            return {"ok": False, "error": f"command failed: {exc}"}

    def _answer(self, op: Operation, reply: dict[str, Any]) -> web.Response:
        required = [p.name for p in op.params if p.required]
        result: Answer = answer(
            reply, cmd=op.cmd, default_field=required[0] if len(required) == 1 else None
        )
        return json_response(result.status, result.body)

    # -- handlers without a control verb -------------------------------------------------------
    async def _inject(
        self, request: web.Request, op: Operation, values: dict[str, Any]
    ) -> web.StreamResponse:
        """``POST /api/v1/messages``: validate everything (off the event loop), then one
        message per recipient through the intake; 200 once every message is durable."""
        intake = self.ctx.intake
        if intake is None:
            return json_response(503, error_body("message injection is not available"))
        try:
            prepared = await asyncio.to_thread(
                prepare_body, request["raw_body"], intake.vmtas.known
            )
        except InjectError as exc:
            return json_response(400, {"errors": [p.as_dict() for p in exc.problems]})
        if prepared.request.unsubscribe and intake.unsubscribe is None:
            problem = {
                "field": "unsubscribe",
                "error": "one-click unsubscribe is not configured ([unsubscribe] url or mailto)",
            }
            return json_response(400, {"errors": [problem]})
        result = await submit_all(
            intake,
            prepared,
            auth_user=self._submitter(request),
            client_ip=request.remote or "",
        )
        log.info(
            "HTTP injection from %s: %d accepted, %d refused",
            request.remote,
            result.accepted,
            len(result.failed),
        )
        return json_response(200, result.as_json())

    async def _unsubscribe(
        self, request: web.Request, op: Operation, values: dict[str, Any]
    ) -> web.StreamResponse:
        """``GET /unsubscribe/{token}``: the page with the button; ``POST``: one-click
        (RFC 8058). A bad token gets 400 and no detail; nothing is done on GET."""
        step = self.ctx.unsubscribe()
        if step is None:
            return _html(404, unsubscribe_page.error_page("Unsubscribe links are not enabled."))
        token = values.get("token", "")
        now = self.ctx.clock()
        if request.method != "POST":
            try:
                what = read_token(step.secret, token, now=now, max_age=step.max_age)
            except TokenError:
                return _html(400, unsubscribe_page.invalid_page())
            return _html(200, unsubscribe_page.confirm_page(what, step.page_text))
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(self.ctx.config().http.max_request_size)
        except Exception:  # a malformed multipart body
            form = None
        fields = {k: v for k, v in (form or {}).items() if isinstance(v, str)}
        if not unsubscribe_page.is_one_click(fields):
            return _html(
                400,
                unsubscribe_page.error_page("Expected the form field List-Unsubscribe=One-Click."),
            )
        store = self.ctx.suppression
        if store is None:
            return _html(503, unsubscribe_page.error_page("Please try again later."))
        try:
            what = apply_unsubscribe(
                token,
                secret=step.secret,
                store=store,
                publish=self.ctx.bus.publish,
                now=now,
                source="one-click",
                max_age=step.max_age,
            )
        except (TokenError, SuppressionError):
            return _html(400, unsubscribe_page.invalid_page())
        except Exception:  # the list cannot be written (a full disk): ask for a retry
            log.exception("unsubscribe: cannot update the suppression list")
            return _html(503, unsubscribe_page.error_page("Please try again later."))
        log.info("unsubscribed %s from %s (one-click)", what.recipient, what.scope or "*")
        return _html(200, unsubscribe_page.done_page(what, step.page_text))

    def _submitter(self, request: web.Request) -> str:
        """The message's auth user: the token's name, or "admin" for an admin network."""
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return self.tokens.name(token.strip()) or "token"
        return "admin"

    async def _whoami(
        self, request: web.Request, op: Operation, values: dict[str, Any]
    ) -> web.StreamResponse:
        return json_response(200, {"role": request["role"], "version": __version__})

    async def _traffic(
        self, request: web.Request, op: Operation, values: dict[str, Any]
    ) -> web.StreamResponse:
        return json_response(200, per_minute(self.ctx.traffic.buckets, self.ctx.clock()))

    async def _queue_detail(
        self, request: web.Request, op: Operation, values: dict[str, Any]
    ) -> web.StreamResponse:
        """The queue's row (``queues``), its shaping state (``status``) and the replies its
        queued recipients last got (``list``)."""
        name = values["queue"]
        rows = await self._control({"cmd": "queues", "max": 0})
        status = await self._control({"cmd": "status"})
        if not rows.get("ok") or not status.get("ok"):
            return self._answer(op, rows if not rows.get("ok") else status)
        row = next((q for q in rows["queues"] if q["queue"] == name), None)
        shaping = next((q for q in status["status"]["queues"] if q["name"] == name), None)
        if row is None and shaping is None:
            return json_response(404, error_body(f"no delivery queue {name}", "queue"))
        listed = await self._control({"cmd": "list", "queue": name, "limit": DETAIL_SCAN})
        replies: dict[str, int] = {}
        for rcpt in listed.get("recipients", []):
            if rcpt.get("last_error"):
                replies[rcpt["last_error"]] = replies.get(rcpt["last_error"], 0) + 1
        queues = self.ctx.operator.scheduler.queues.values()
        queue = next((q for q in queues if q.name == name), None)
        since = queue.backoff.since if queue is not None and queue.backoff.in_backoff else None
        return json_response(200, queue_detail(name, row, shaping, since, replies))

    async def _events(
        self, request: web.Request, op: Operation, values: dict[str, Any]
    ) -> web.StreamResponse:
        try:
            types = sse.parse_types(values["types"])
        except ValueError as exc:
            return json_response(400, error_body(str(exc), "types"))
        client = sse.Client(types)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        self.stream.add(client)
        try:
            await response.write(b": outrider events\n\n")
            while not client.closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.wakeup.wait(), sse.KEEPALIVE)
                if client.closed:
                    break
                if client.dropped:
                    await response.write(
                        sse.frame({"error": "too far behind: events were dropped"}, "dropped")
                    )
                    break
                frames = client.take()
                await response.write(b"".join(frames) if frames else sse.KEEPALIVE_FRAME)
        except ConnectionError:  # the client left
            pass
        finally:
            self.stream.remove(client)
        return response

    async def _suppressions(
        self, request: web.Request, op: Operation, values: dict[str, Any]
    ) -> web.StreamResponse:
        """The suppression list, on the daemon's own connection (SQLite, a few ms at most
        for a page; an add of many addresses is one transaction)."""
        store = self.ctx.suppression
        if store is None:
            return json_response(503, error_body("the suppression list is not open"))
        call = {
            "suppressions_list": suppressions.list_entries,
            "suppression_get": suppressions.get_entries,
            "suppressions_add": suppressions.add_entries,
            "suppression_delete": suppressions.delete_entry,
        }[op.handler]
        status, body = call(store, values)
        return json_response(status, body)

    async def _openapi_doc(
        self, request: web.Request, op: Operation, values: dict[str, Any]
    ) -> web.StreamResponse:
        if self._openapi is None:
            self._openapi = json.dumps(openapi.document(__version__), indent=1).encode()
        return web.Response(body=self._openapi, content_type=JSON)

    async def _metrics(
        self, request: web.Request, op: Operation, values: dict[str, Any]
    ) -> web.StreamResponse:
        overview = self.ctx.hooks.overview()
        rows = await self._control({"cmd": "queues", "max": 0})
        snap = Snapshot(
            totals=dict(self.ctx.traffic.total),
            queues=rows.get("queues", []),
            top=self.ctx.config().http.metrics_top_queues,
            connections_in=overview["connections"]["in"],
            connections_out=overview["connections"]["out"],
            spool_messages=overview["spool"]["messages"],
            spool_bytes=overview["spool"]["bytes"],
            uptime=max(0.0, self.ctx.clock() - self.ctx.started),
            latency=self.latency,
            webhooks=overview.get("webhooks", {}),
            bounce_categories=dict(self.ctx.traffic.bounce_categories),
            cluster=overview.get("cluster"),
        )
        return web.Response(
            text=render(snap),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def _static(
        self, request: web.Request, op: Operation, values: dict[str, Any]
    ) -> web.StreamResponse:
        path = static_files.resolve(values.get("file") or "index.html")
        if path is None:
            return json_response(404, error_body(f"no such file {request.path}"))
        return web.Response(
            body=await asyncio.to_thread(path.read_bytes),
            headers={
                "Content-Type": static_files.content_type(path),
                "Cache-Control": "no-cache",
                **static_files.SECURITY_HEADERS,
            },
        )


def _html(status: int, text: str) -> web.Response:
    return web.Response(
        status=status, text=text, content_type="text/html", headers=unsubscribe_page.HEADERS
    )


class _TooLarge(Exception):
    pass


def queue_detail(
    name: str,
    row: dict[str, Any] | None,
    shaping: dict[str, Any] | None,
    backoff_since: float | None,
    replies: dict[str, int],
) -> dict[str, Any]:
    """``GET /api/v1/queues/{queue}``: the ``show queues`` row's keys at the top (a queue
    with no mail and normal mode has no row: its shaping state stands in), its ``status``
    entry under ``shaping``, and the replies its queued recipients last got, commonest
    first."""
    base: dict[str, Any] = (
        dict(row)
        if row is not None
        else {
            "queue": name,
            "domain": (shaping or {}).get("domain", ""),
            "vmta": (shaping or {}).get("vmta", ""),
            "recipients": 0,
            "messages": 0,
            "bytes": 0,
            "oldest_age": 0,
            "connections": (shaping or {}).get("connections", 0),
            "mode": (shaping or {}).get("mode", "normal"),
            "reason": "",
            "next_attempt": None,
            "last_error": "",
        }
    )
    ranked = sorted(replies.items(), key=lambda kv: (-kv[1], kv[0]))[:RECENT_REPLIES]
    return base | {
        "shaping": shaping,
        "disabled_sources": (shaping or {}).get("disabled_sources", []),
        "backoff_since": iso(backoff_since),
        "recent_replies": [{"reply": text, "recipients": n} for text, n in ranked],
    }
