"""Turn an HTTP request's path, query and JSON body into a control request, checking each
value against the operation's declared parameters (pure: 400s name the field)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from outrider.http.api import Operation, Param

TRUE = frozenset({"true", "1", "yes", "on"})
FALSE = frozenset({"false", "0", "no", "off", ""})
MAX_INTEGER = 10**9


class FieldError(ValueError):
    """Bad input: ``field`` names the parameter (or None for the request as a whole)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def values(
    op: Operation,
    path: Mapping[str, str],
    query: Mapping[str, str],
    body: Any,
) -> dict[str, Any]:
    """The operation's parameters, typed and defaulted, by parameter name. Unknown query
    or body fields are refused, so a misspelt filter is not silently ignored."""
    declared = {p.name for p in op.params}
    for name in query:
        if name not in declared or _param(op, name).where != "query":
            raise FieldError(f"unknown query parameter {name!r}", name)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise FieldError("the request body must be a JSON object")
    for name in body:
        if name not in declared or _param(op, name).where not in ("body", "query"):
            raise FieldError(f"unknown body field {name!r}", name)
    out: dict[str, Any] = {}
    for param in op.params:
        if param.where == "path":
            raw: Any = path.get(param.name)
        elif param.name in body:  # a query parameter may come in the body too
            raw = body[param.name]
        else:
            raw = query.get(param.name)
        out[param.name] = convert(param, raw)
    return out


def _param(op: Operation, name: str) -> Param:
    return next(p for p in op.params if p.name == name)


def convert(param: Param, raw: Any) -> Any:
    """One value, from a string (path, query) or a JSON value (body)."""
    name = param.name
    if raw is None or raw == "":
        if param.required:
            raise FieldError(f"'{name}' is required ({param.description})", name)
        return (
            param.default if param.default is not None else ("" if param.kind == "string" else None)
        )
    value: str | int | bool
    if param.kind == "integer":
        value = _integer(name, raw)
    elif param.kind == "boolean":
        value = _boolean(name, raw)
    elif param.kind == "array":
        return _strings(name, raw)
    else:
        if not isinstance(raw, str):
            raise FieldError(f"'{name}' must be a string", name)
        if any(ord(c) < 32 or ord(c) == 127 for c in raw):
            raise FieldError(f"'{name}' must not contain control characters", name)
        value = raw.strip()
    if param.choices and value not in param.choices:
        raise FieldError(f"'{name}' must be one of {', '.join(param.choices)}", name)
    return value


def _integer(name: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise FieldError(f"'{name}' must be a whole number, 0 or more", name)
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit() and raw.strip().isascii():
        value = int(raw.strip())
    else:
        raise FieldError(f"'{name}' must be a whole number, 0 or more", name)
    if not 0 <= value <= MAX_INTEGER:
        raise FieldError(f"'{name}' must be between 0 and {MAX_INTEGER}", name)
    return value


def _strings(name: str, raw: Any) -> list[str]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise FieldError(f"'{name}' must be an array of strings", name)
    return [v.strip() for v in raw]


def _boolean(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in TRUE | FALSE:
        return raw.strip().lower() in TRUE
    raise FieldError(f"'{name}' must be true or false", name)


def control_request(op: Operation, parsed: Mapping[str, Any]) -> dict[str, Any]:
    """The control request for an operation with a ``cmd``."""
    cmd = op.cmd
    consumed: set[str] = set()
    if cmd.startswith("{") and cmd.endswith("}"):
        consumed.add(cmd[1:-1])
        cmd = str(parsed[cmd[1:-1]])
    request: dict[str, Any] = {"cmd": cmd, **dict(op.fixed)}
    for param in op.params:
        if param.name in consumed:
            continue
        value = parsed.get(param.name)
        if value is None or value == "":
            continue
        request[param.field] = value
    return request
