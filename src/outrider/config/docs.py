"""docs/config.md's key tables and the config file's JSON Schema, derived from the model.

The tables sit between ``<!-- BEGIN GENERATED: TABLE -->`` and ``<!-- END GENERATED -->``
so the prose around them stays hand-written. Regenerate them with
``python -m outrider.config.docs --write docs/config.md``; a unit test fails when stale.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from outrider.config.kinds import REQUIRED, Key, keys_of
from outrider.config.model import (
    DECLARED,
    MACRO,
    TABLES,
    DomainPolicy,
    PatternRule,
    VirtualMta,
)

_BLOCK = re.compile(r"(<!-- BEGIN GENERATED: ([\w.-]+) -->\n).*?(<!-- END GENERATED -->)", re.S)


@cache
def key_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring under the field, on one line (the Meaning column)."""
    try:
        body = ast.parse(inspect.getsource(cls)).body[0]
    except OSError:  # installed without sources: the schema goes without descriptions
        return {}
    assert isinstance(body, ast.ClassDef)
    return {
        field.target.id: " ".join(inspect.cleandoc(doc.value.value).splitlines())
        for field, doc in zip(body.body, body.body[1:], strict=False)
        if isinstance(field, ast.AnnAssign)
        and isinstance(field.target, ast.Name)
        and isinstance(doc, ast.Expr)
        and isinstance(doc.value, ast.Constant)
        and isinstance(doc.value.value, str)
    }


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return f"[{', '.join(map(_toml, value))}]"
    return json.dumps(value) if isinstance(value, str) else str(value)


def _default(spec: Key) -> str:
    if spec.required:
        return "—"
    if spec.shown is not None:
        return spec.shown
    return "none" if spec.default in (None, REQUIRED) else f"`{_toml(spec.default)}`"


def markdown(cls: type) -> str:
    """The key table of one config table, as in docs/config.md."""
    docs = key_docs(cls)
    lines = ["| Key | Type | Default | Meaning |", "|---|---|---|---|"]
    for name, (attr, spec) in keys_of(cls).items():
        kind = spec.kind.doc + (" (required)" if spec.required else "")
        lines.append(f"| `{name}` | {kind} | {_default(spec)} | {docs[attr]} |")
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    """``text`` (docs/config.md) with every generated block brought up to date."""
    found = [match.group(2) for match in _BLOCK.finditer(text)]
    if sorted(found) != sorted(DECLARED):
        missing, unknown = set(DECLARED) - set(found), set(found) - set(DECLARED)
        raise ValueError(f"generated blocks: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return _BLOCK.sub(lambda m: m.group(1) + markdown(DECLARED[m.group(2)]) + m.group(3), text)


def _object(cls: type, **extra: Any) -> dict[str, Any]:
    docs = key_docs(cls)
    properties: dict[str, Any] = {}
    for name, (attr, spec) in keys_of(cls).items():
        default = {} if spec.default in (None, REQUIRED) else {"default": spec.default}
        described = {"description": docs[attr]} if attr in docs else {}
        properties[name] = {**spec.kind.schema, **described, **default}
    required = [name for name, (_, spec) in keys_of(cls).items() if spec.required]
    schema = {"type": "object", "properties": properties | extra, "additionalProperties": False}
    return schema | ({"required": required} if required else {})


def _named(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": schema}


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the config file, for editors and for checking files in CI.

    It checks shapes, types and ranges; references between tables, listener roles and
    TLS files are only checked by ``outrider check-config``.
    """
    domains = _named({"$ref": "#/$defs/domain"})
    overrides = domains | {"description": 'Per-domain overrides, as [domain."NAME"] tables.'}
    properties: dict[str, Any] = {}
    for name, (cls, shape) in TABLES.items():
        if cls is None:
            properties[name] = _named(MACRO.schema)
        elif cls is DomainPolicy:
            properties[name] = domains
        elif shape == "array":
            properties[name] = {"type": "array", "minItems": 1, "items": _object(cls)}
        else:
            table = _object(cls, domain=overrides) if cls is VirtualMta else _object(cls)
            properties[name] = _named(table) if shape == "named" else table
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Outrider configuration file (TOML)",
        "type": "object",
        "properties": properties,
        "required": ["listener"],
        "additionalProperties": False,
        "$defs": {"domain": _object(DomainPolicy), "rule": _object(PatternRule)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m outrider.config.docs", description="Regenerate docs/config.md's key tables."
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="FILE", type=Path, help="update FILE in place")
    action.add_argument("--check", metavar="FILE", type=Path, help="exit 1 if FILE is stale")
    args = parser.parse_args(argv)
    path: Path = args.write or args.check
    text = path.read_text(encoding="utf-8")
    fresh = render(text)
    if fresh == text:
        return 0
    if args.write:
        path.write_text(fresh, encoding="utf-8")
        return 0
    print(f"{path} is stale: run python -m outrider.config.docs --write {path}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
