"""The OpenAPI 3 document, generated from :data:`outrider.http.api.OPERATIONS` (the same
declarations the request parsing uses)."""

from __future__ import annotations

from typing import Any

from outrider.http.api import OPERATIONS, Operation, Param
from outrider.inject.schema import SCHEMAS

ERROR = {"$ref": "#/components/schemas/Error"}


def _schema(param: Param) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": param.kind}
    if param.kind == "array":
        schema["items"] = {"type": "string"}
    if param.kind == "integer":
        schema["minimum"] = 0
    if param.choices:
        schema["enum"] = list(param.choices)
    if param.default is not None:
        schema["default"] = param.default
    return schema


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def operation(op: Operation) -> dict[str, Any]:
    parameters = [
        {
            "name": p.name,
            "in": p.where,
            "required": p.where == "path" or p.required,
            "description": p.description,
            "schema": _schema(p),
        }
        for p in op.params
        if p.where != "body"
    ]
    body = [p for p in op.params if p.where == "body"]
    ok: dict[str, Any] = {"description": "OK"}
    if op.reply == "application/json":
        ok["content"] = {"application/json": {"schema": {"type": "object"}}}
    else:
        ok["content"] = {op.reply: {"schema": {"type": "string"}}}
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "description": (
            ("No rights needed." if op.role == "public" else f"Role needed: {op.role}.")
            + (f" Control verb: `{op.cmd}`." if op.cmd else "")
        ),
        "tags": [op.segments[2] if len(op.segments) > 2 else op.segments[0] or "monitor"],
        "parameters": parameters,
        "responses": {
            "200": ok,
            "400": _error("bad input; `field` names the parameter"),
            "401": _error("no or unknown credentials"),
            "403": _error("not allowed for this role, or a refused cross-origin request"),
            "404": _error("no such queue, message, job or source"),
        },
    }
    if op.role == "public":
        out["security"] = []
        del out["responses"]["401"], out["responses"]["403"]
    if op.role in ("admin", "inject"):
        out["responses"]["413"] = _error("request body larger than [http] max-request-size")
    if op.cmd == "reload":
        out["responses"]["409"] = _error("the config file was refused; the running one stays")
    if op.body_schema:
        out["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{op.body_schema}"}}
            },
        }
        if op.body_schema == "InjectRequest":
            ok["content"] = {
                "application/json": {"schema": {"$ref": "#/components/schemas/InjectReply"}}
            }
            out["responses"]["400"] = {
                "description": "invalid request, nothing queued; every bad field listed",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/InjectErrors"}}
                },
            }
            del out["responses"]["404"]
    if op.form_body:
        form = {
            "type": "object",
            "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}},
            "required": ["List-Unsubscribe"],
        }
        out["requestBody"] = {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": form},
                "multipart/form-data": {"schema": form},
            },
        }
        out["responses"]["503"] = _error("the suppression list cannot be written; retry")
    if body:
        out["requestBody"] = {
            "required": any(p.required for p in body),
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            p.name: {**_schema(p), "description": p.description} for p in body
                        },
                        "required": [p.name for p in body if p.required],
                        "additionalProperties": False,
                    }
                }
            },
        }
    return out


def document(version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.openapi_path, {})[op.method.lower()] = operation(op)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Outrider management API",
            "version": version,
            "description": "Thin adapter over the control socket; see docs/operations.md.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
                    "required": ["error"],
                },
                **SCHEMAS,
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
