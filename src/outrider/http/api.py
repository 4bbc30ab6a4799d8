"""The one table of HTTP operations: path, method, control verb, parameters, role.

Request parsing (:mod:`outrider.http.params`), routing (:func:`match`), dispatch to the
control calls (:mod:`outrider.http.server`) and the OpenAPI document
(:mod:`outrider.http.openapi`) are all read from :data:`OPERATIONS`, so they cannot
disagree. An operation with a ``cmd`` becomes one control request ``{"cmd": cmd,
**fixed, **parameters}``; a ``cmd`` of ``"{name}"`` takes the verb from that
parameter's value (``POST queues/{queue}/mode`` with ``{"mode": "backoff"}``). An
operation without ``cmd`` is answered by the HTTP layer itself (``handler``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote

# "public": no rights needed (the monitor's page and assets, which hold no data: a browser
# cannot send a bearer token when it navigates, so the page must load before it asks for one)
# "inject": admin, or a token whose role is inject (which may do nothing else)
Need = Literal["admin", "monitor", "public", "inject"]

Where = Literal["path", "query", "body"]
Kind = Literal["string", "integer", "boolean", "array"]  # array: of strings
Method = Literal["GET", "POST", "DELETE"]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: Where
    description: str
    kind: Kind = "string"
    required: bool = False
    choices: tuple[str, ...] = ()
    default: str | int | bool | None = None
    control: str = ""  # the control request's field, when it differs from ``name``

    @property
    def field(self) -> str:
        return self.control or self.name


@dataclass(frozen=True, slots=True)
class Operation:
    method: Method
    path: str  # "/api/v1/queues/{queue}/retry"
    summary: str
    role: Need = "monitor"
    cmd: str = ""  # control verb; "" when answered by ``handler``
    params: tuple[Param, ...] = ()
    fixed: tuple[tuple[str, object], ...] = ()  # constant fields of the control request
    handler: str = ""  # name of the HTTP layer's own handler
    reply: str = "application/json"
    body_schema: str = ""  # a JSON body the handler parses itself: its OpenAPI schema's name
    form_body: bool = False  # the handler reads its own (form) body; path parameters only

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.strip("/").split("/"))

    @property
    def openapi_path(self) -> str:
        return self.path.replace("*}", "}")

    @property
    def operation_id(self) -> str:
        words = [s.strip("{}*") for s in self.segments if s and s not in ("api", "v1")] or ["root"]
        return self.method.lower() + "_" + "_".join(w.replace(".", "_") for w in words)


def _queue(
    description: str = "delivery queue name (destination/vmta, URL-encoded), "
    "destination or recipient domain",
) -> Param:
    return Param("queue", "path", description, required=True)


ID = Param("id", "path", "queue id (from '250 queued as ...')", required=True)
JOB = Param("job", "path", "job name (X-Job)", required=True)
IP = Param("ip", "path", "a virtual MTA's source address", required=True)
TOKEN = Param("token", "path", "the token of a List-Unsubscribe URL", required=True)
SUPPRESSED = Param("address", "path", "a suppressed address (URL-encoded)", required=True)
BOUNCE = Param("bounce", "query", "send the sender a failure DSN", "boolean", default=False)

_QUEUE_ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("retry", "retry", "attempt the queue's deferred mail now"),
    ("pause", "pause", "stop delivering the queue's mail (it stays queued)"),
    ("resume", "resume", "resume a paused queue"),
    ("delete", "delete", "remove the queue's mail (accounting 'b' rows; a DSN with bounce)"),
    ("hold", "hold", "hold the queue's messages until released"),
    ("release", "release", "release the queue's held messages"),
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET", "/api/v1/whoami", "the caller's role and the server version", handler="whoami"
    ),
    Operation(
        "GET", "/api/v1/status", "version, uptime, connections, traffic, spool", cmd="overview"
    ),
    Operation(
        "GET",
        "/api/v1/cluster",
        "[cluster] only: live nodes, and per queue the leases each node holds, rate, mode",
        cmd="cluster",
    ),
    Operation(
        "GET",
        "/api/v1/traffic",
        "received, delivered, bounced, deferred per minute over the last hour",
        handler="traffic",
    ),
    Operation(
        "GET",
        "/api/v1/queues",
        "the delivery queues",
        cmd="queues",
        params=(
            Param("domain", "query", "only queues holding this recipient domain's mail"),
            Param("vmta", "query", "only this virtual MTA's queues"),
            Param(
                "mode", "query", "only queues in this mode", choices=("normal", "backoff", "paused")
            ),
            Param(
                "sort",
                "query",
                "order",
                choices=("recipients", "age", "size"),
                default="recipients",
            ),
            Param("max", "query", "at most this many queues (0: all)", "integer", default=0),
        ),
    ),
    Operation(
        "GET",
        "/api/v1/queues/{queue}",
        "one queue: its row, shaping state, source addresses, recent replies",
        params=(_queue("delivery queue name (destination/vmta), URL-encoded"),),
        handler="queue_detail",
    ),
    Operation(
        "GET",
        "/api/v1/topdomains",
        "recipient domains by queued mail",
        cmd="topdomains",
        params=(
            Param("max", "query", "at most this many domains (0: all)", "integer", default=20),
        ),
    ),
    Operation("GET", "/api/v1/vmtas", "virtual MTAs and their queues", cmd="vmtas"),
    Operation("GET", "/api/v1/jobs", "jobs with queued mail, and paused jobs", cmd="jobs"),
    Operation(
        "GET",
        "/api/v1/messages",
        "queued recipients",
        cmd="list",
        params=(
            Param("queue", "query", "only this queue, destination or domain"),
            Param("rcpt", "query", "only this recipient address"),
            Param("job", "query", "only this job"),
            Param("sender", "query", "only this sender address"),
            Param("id", "query", "only this queue id"),
            Param("limit", "query", "at most this many (0: all)", "integer", default=1000),
        ),
    ),
    Operation(
        "POST",
        "/api/v1/messages",
        "inject messages: one per recipient, templates rendered per recipient "
        "(KumoMTA's injection format; see docs/injection.md)",
        role="inject",
        handler="inject",
        body_schema="InjectRequest",
    ),
    Operation(
        "GET",
        "/api/v1/messages/{id}",
        "one queued message: envelope, recipients, headers",
        cmd="message",
        params=(
            ID,
            Param(
                "body", "query", "the whole message, not just the headers", "boolean", default=False
            ),
        ),
    ),
    Operation(
        "DELETE",
        "/api/v1/messages/{id}",
        "remove a queued message",
        role="admin",
        cmd="delete",
        params=(ID, BOUNCE),
    ),
    *(
        Operation(
            "POST",
            f"/api/v1/queues/{{queue}}/{action}",
            text,
            role="admin",
            cmd=cmd,
            params=(_queue(), BOUNCE) if action == "delete" else (_queue(),),
        )
        for action, cmd, text in _QUEUE_ACTIONS
    ),
    Operation(
        "POST",
        "/api/v1/queues/{queue}/mode",
        "set a queue's mode",
        role="admin",
        cmd="{mode}",
        params=(
            _queue(),
            Param("mode", "body", "the new mode", required=True, choices=("backoff", "normal")),
        ),
    ),
    Operation(
        "POST",
        "/api/v1/jobs/{job}/pause",
        "hold a job's mail",
        role="admin",
        cmd="pause-job",
        params=(JOB,),
    ),
    Operation(
        "POST",
        "/api/v1/jobs/{job}/resume",
        "resume a paused job",
        role="admin",
        cmd="resume-job",
        params=(JOB,),
    ),
    Operation(
        "POST",
        "/api/v1/sources/{ip}/disable",
        "stop sending from a source address",
        role="admin",
        cmd="disable-source",
        params=(IP,),
    ),
    Operation(
        "POST",
        "/api/v1/sources/{ip}/enable",
        "send from a disabled source again",
        role="admin",
        cmd="enable-source",
        params=(IP,),
    ),
    Operation(
        "POST",
        "/api/v1/reload",
        "reload the config file; says whether it was accepted",
        role="admin",
        cmd="reload",
    ),
    Operation(
        "GET",
        "/api/v1/config",
        "the running configuration",
        cmd="config",
        params=(
            Param("effective", "query", "every key, defaults included", "boolean", default=False),
        ),
    ),
    Operation(
        "GET",
        "/api/v1/route",
        "where mail for an address would go, and why",
        cmd="route",
        params=(
            Param("address", "query", "a recipient address", required=True),
            Param("vmta", "query", "as sent by this virtual MTA or pool"),
        ),
    ),
    Operation(
        "GET",
        "/api/v1/events",
        "server-sent events: one JSON object per event",
        params=(
            Param(
                "types",
                "query",
                "comma-separated event types to follow "
                "(received, delivered, bounced, deferred, queue, done; "
                "default all)",
            ),
        ),
        handler="events",
        reply="text/event-stream",
    ),
    Operation(
        "GET",
        "/api/v1/suppressions",
        "suppression list entries, in (scope, address) order",
        params=(
            Param("scope", "query", "only this sender domain's list ('*': the global one)"),
            Param("limit", "query", "at most this many (0: all)", "integer", default=1000),
            Param("after", "query", "the last address of the previous page (with scope)"),
        ),
        handler="suppressions_list",
    ),
    Operation(
        "GET",
        "/api/v1/suppressions/{address}",
        "an address's suppression entries (every list)",
        params=(SUPPRESSED,),
        handler="suppression_get",
    ),
    Operation(
        "POST",
        "/api/v1/suppressions",
        "suppress one address or many",
        role="admin",
        params=(
            Param("address", "body", "an address to suppress"),
            Param("addresses", "body", "addresses to suppress", "array"),
            Param("scope", "body", "the sender domain's list (default '*': the global one)"),
            Param(
                "reason",
                "body",
                "why",
                choices=(
                    "bad-mailbox",
                    "bad-domain",
                    "unsubscribe",
                    "complaint",
                    "manual",
                    "import",
                ),
                default="manual",
            ),
        ),
        handler="suppressions_add",
    ),
    Operation(
        "DELETE",
        "/api/v1/suppressions/{address}",
        "stop suppressing an address",
        role="admin",
        params=(
            SUPPRESSED,
            Param("scope", "query", "only this sender domain's list ('*': the global one)"),
        ),
        handler="suppression_delete",
    ),
    Operation(
        "GET", "/api/v1/openapi.json", "this API as an OpenAPI 3 document", handler="openapi"
    ),
    Operation(
        "GET",
        "/metrics",
        "Prometheus metrics (text format 0.0.4)",
        handler="metrics",
        reply="text/plain",
    ),
    Operation(
        "GET",
        "/unsubscribe/{token}",
        "an unsubscribe link's page: a button that POSTs (a GET never unsubscribes)",
        params=(TOKEN,),
        role="public",
        handler="unsubscribe_page",
        reply="text/html",
    ),
    Operation(
        "POST",
        "/unsubscribe/{token}",
        "one-click unsubscribe (RFC 8058): body List-Unsubscribe=One-Click, form-encoded",
        params=(TOKEN,),
        role="public",
        handler="unsubscribe",
        reply="text/html",
        form_body=True,
    ),
    Operation("GET", "/", "the web monitor", role="public", handler="static", reply="text/html"),
    Operation(
        "GET",
        "/static/{file*}",
        "the web monitor's files",
        params=(Param("file", "path", "file name under static/", required=True),),
        role="public",
        handler="static",
        reply="application/octet-stream",
    ),
)


@dataclass(frozen=True, slots=True)
class Match:
    """The routing result: the operation and its path parameters (decoded), or the
    status to answer (404 no such path, 405 path known but not for this method)."""

    operation: Operation | None
    path_params: dict[str, str] = field(default_factory=dict)
    status: int = 200
    allowed: tuple[str, ...] = ()


def match(method: str, raw_path: str, operations: tuple[Operation, ...] = OPERATIONS) -> Match:
    """Route on the raw (still percent-encoded) path, one segment per template segment,
    so a queue name's ``/`` travels as ``%2F`` and decodes into one parameter."""
    method = "GET" if method.upper() == "HEAD" else method.upper()
    segments = tuple(raw_path.split("?", 1)[0].strip("/").split("/"))
    allowed: list[str] = []
    for op in operations:
        params = _bind(op.segments, segments)
        if params is None:
            continue
        if op.method == method:
            return Match(op, params)
        allowed.append(op.method)
    if allowed:
        return Match(None, status=405, allowed=tuple(sorted(set(allowed))))
    return Match(None, status=404)


def _bind(template: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, str] | None:
    """Bind path parameters; a last ``{name*}`` takes the rest of the path (``a/b.js``)."""
    params: dict[str, str] = {}
    if template and template[-1].endswith("*}") and len(segments) >= len(template):
        rest = segments[len(template) - 1 :]
        if not all(rest):
            return None
        params[template[-1][1:-2]] = "/".join(unquote(s, errors="replace") for s in rest)
        template, segments = template[:-1], segments[: len(template) - 1]
    if len(template) != len(segments):
        return None
    for want, got in zip(template, segments, strict=True):
        if want.startswith("{") and want.endswith("}"):
            value = unquote(got, errors="replace") if got else ""
            if not value:
                return None
            params[want[1:-1]] = value
        elif want != got:
            return None
    return params
