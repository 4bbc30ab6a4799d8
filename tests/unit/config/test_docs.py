"""The bundled examples, docs/config.md and the JSON Schema stay consistent with the code."""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest

from outrider import cli
from outrider.config import docs
from outrider.config.kinds import keys_of
from outrider.config.loader import known_keys, load_config, parse_config
from outrider.config.model import DECLARED, Config, DomainPolicy
from outrider.inbound.tls import generate_self_signed

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "outrider.toml"
DOCS = ROOT / "docs" / "config.md"

_HEADING = re.compile(r"^## \[\[?([\w-]+)")
_SUBHEADING = re.compile(r"^### `([\w-]+)` entries")
_ROW = re.compile(r"^\| `([a-z0-9-]+)` \|([^|]*)\|([^|]*)\|")
# Tables whose documented defaults can be checked by setting them in isolation.
_CHECKABLE = {
    "server",
    "dns",
    "listener",
    "relay",
    "domain",
    "auth",
    "mta-sts",
    "http",
    "accounting",
    "suppression",
    "srs",
    "event-log",
    "unsubscribe",
    "cluster",
}


@pytest.fixture(autouse=True)
def _pinned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "fqdn.example.test")
    monkeypatch.chdir(tmp_path)
    # The example's submission listener uses the certificate `make run` generates.
    generate_self_signed(
        tmp_path / "var/tls/cert.pem", tmp_path / "var/tls/key.pem", "mta.example.test"
    )


def documented_rows() -> dict[str, dict[str, str]]:
    """{table: {key: default cell}} from the key tables of docs/config.md."""
    rows: dict[str, dict[str, str]] = {}
    table = parent = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        heading = _HEADING.match(line)
        sub = _SUBHEADING.match(line)
        if heading:
            table = parent = heading.group(1)
            rows[table] = {}
        elif sub and parent is not None:
            table = f"{parent}.{sub.group(1)}"
            rows[table] = {}
        elif line.startswith("## "):
            table = parent = None
        elif table is not None and (row := _ROW.match(line)):
            rows[table][row.group(1)] = row.group(3).strip()
    return {name: keys for name, keys in rows.items() if keys}


def test_docs_document_exactly_the_known_keys() -> None:
    documented = documented_rows()
    assert {table: set(keys) for table, keys in documented.items()} == {
        table: set(keys) for table, keys in known_keys().items()
    }


def _with_key(table: str, key: str, value: str) -> str:
    listener = '[[listener]]\naddress = "127.0.0.1:2525"\n'
    line = f"{key} = {value}\n"
    if table == "listener":
        return listener + line
    header = '[domain."*"]' if table == "domain" else f"[{table}]"
    return f"{listener}{header}\n{line}"


def test_documented_defaults_match_the_code() -> None:
    baseline = parse_config('[[listener]]\naddress = "127.0.0.1:2525"\n')
    checked = 0
    for table, rows in documented_rows().items():
        if table not in _CHECKABLE:
            continue
        for key, default in rows.items():
            literal = re.fullmatch(r"`([^`]+)`", default)
            if literal is None:  # prose such as "none: MX lookup"
                continue
            explicit = parse_config(_with_key(table, key, literal.group(1)))
            where = f"{table}.{key}: documented default {default}"
            if table == "domain":  # the raw layers differ: compare the effective policies
                assert explicit.policy_for("a.example", "default") == DomainPolicy(), where
                assert explicit.domains == baseline.domains, where
            else:
                assert explicit == baseline, where
            checked += 1
    assert checked == 91  # the others are prose (FQDN, cores, none, required, role-dependent)


def test_example_loads_with_make_run_settings(tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    assert config.source == EXAMPLE
    assert config.server.hostname == "mta.example.test"
    assert config.server.spool_dir == tmp_path / "var/spool"
    assert config.server.log_dir == tmp_path / "var/log"
    assert [lst.address for lst in config.listeners] == [("127.0.0.1", 2525), ("127.0.0.1", 5870)]
    assert [lst.role for lst in config.listeners] == ["mx", "submission"]
    assert [str(n) for n in config.listeners[0].relay_networks] == ["127.0.0.0/8"]
    assert config.dns.nameservers == ()
    assert config.policy_for("example.org").retry_after == (300, 600, 1800, 3600, 7200, 14400)
    assert config.policy_for("example.net").route is None


def test_example_commented_settings_are_valid_too() -> None:
    """Uncommenting the example's optional sections must give a loadable config."""
    text = EXAMPLE.read_text(encoding="utf-8")
    uncommented = re.sub(r"(?m)^# (?=\[|[a-z-]+ = )", "", text)
    assert uncommented != text
    config: Config = parse_config(uncommented, str(EXAMPLE))
    assert config.dns.nameservers == (("127.0.0.1", 5353),)
    assert config.server.pid_file is not None
    assert config.policy_for("example.net").route == ("127.0.0.2", 2600)
    assert config.policy_for("example.net").max_smtp_out == 5
    assert config.policy_for("example.net").retry_after == config.policy_for("x").retry_after


# --------------------------------------------------------------------------- generated key tables


def test_docs_key_tables_are_generated_from_the_model() -> None:
    """Fails when a declaration changed but docs/config.md was not regenerated."""
    text = DOCS.read_text(encoding="utf-8")
    assert docs.render(text) == text, "run: python -m outrider.config.docs --write docs/config.md"


def test_docs_write_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = DOCS.read_text(encoding="utf-8")
    stale = tmp_path / "config.md"
    stale.write_text(text.replace("| `banner` | string |", "| `banner` | text |"), "utf-8")
    assert docs.main(["--check", str(stale)]) == 1
    assert "is stale: run python -m outrider.config.docs --write" in capsys.readouterr().err
    assert docs.main(["--write", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == text
    assert docs.main(["--check", str(stale)]) == 0


def test_docs_need_one_block_per_table() -> None:
    text = DOCS.read_text(encoding="utf-8")
    renamed = text.replace("BEGIN GENERATED: relay -->", "BEGIN GENERATED: relays -->")
    with pytest.raises(ValueError, match=r"missing \['relay'\], unknown \['relays'\]"):
        docs.render(renamed)


def test_every_key_has_a_docstring() -> None:
    for table, cls in DECLARED.items():
        meanings = docs.key_docs(cls)
        for name, (attr, _) in keys_of(cls).items():
            assert meanings.get(attr, "").endswith((".", ")")), f"{table}.{name}: no docstring"


# --------------------------------------------------------------------------- JSON Schema


def _schema() -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["config-schema"]) == 0
    schema: dict[str, Any] = json.loads(out.getvalue())
    return schema


def _is(value: object, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "boolean"
    python = {"object": dict, "array": list, "string": str, "integer": int, "number": int | float}
    return kind in python and isinstance(value, python[kind])


def _violations(schema: Any, value: object, defs: dict[str, Any], at: str = "") -> list[str]:
    """Where ``value`` breaks ``schema``: the JSON Schema rules the config schema uses."""
    if schema is False:
        return [f"{at}: not allowed"]
    if "$ref" in schema:
        return _violations(defs[schema["$ref"].rsplit("/", 1)[1]], value, defs, at)
    if "anyOf" in schema:
        options = [_violations(option, value, defs, at) for option in schema["anyOf"]]
        return [] if [] in options else options[-1]
    kinds = schema.get("type", [])
    if kinds and not any(
        _is(value, kind) for kind in ([kinds] if isinstance(kinds, str) else kinds)
    ):
        return [f"{at}: not {kinds}"]
    if value not in schema.get("enum", [value]) or value != schema.get("const", value):
        return [f"{at}: not one of the allowed values"]
    found = []
    if isinstance(value, str) and not re.search(schema.get("pattern", ""), value):
        found.append(f"{at}: does not match the pattern")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        found.append(f"{at}: too short")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        found.append(f"{at}: out of range")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            found.append(f"{at}: too few items")
        for index, item in enumerate(value):
            found += _violations(schema.get("items", {}), item, defs, f"{at}[{index}]")
    if isinstance(value, dict):
        found += [f"{at}.{key}: missing" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            sub = schema.get("properties", {}).get(key, schema.get("additionalProperties", {}))
            found += _violations(sub, item, defs, f"{at}.{key}")
    return found


def test_config_schema_command_prints_the_declared_keys() -> None:
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["listener"]
    tables, keys = schema["properties"], known_keys()
    assert set(tables) == set(keys) - {"smtp-pattern-list.rules"} | {"domain-macro"}
    assert set(tables["server"]["properties"]) == set(keys["server"])
    assert set(tables["listener"]["items"]["properties"]) == set(keys["listener"])
    assert tables["listener"]["items"]["required"] == ["address"]
    assert set(schema["$defs"]["domain"]["properties"]) == set(keys["domain"])
    assert set(schema["$defs"]["rule"]["properties"]) == set(keys["smtp-pattern-list.rules"])
    vmta = tables["virtual-mta"]["additionalProperties"]["properties"]
    assert set(vmta) == {*keys["virtual-mta"], "domain"}
    port = schema["$defs"]["domain"]["properties"]["smtp-port"]
    assert (port["minimum"], port["maximum"], port["default"]) == (1, 65535, 25)
    assert port["description"].startswith("TCP port of the MX hosts found in DNS")


def test_example_configs_match_the_schema() -> None:
    schema = _schema()
    example = EXAMPLE.read_text(encoding="utf-8")
    uncommented = re.sub(r"(?m)^# (?=\[|[a-z-]+ = )", "", example)
    patterns = (ROOT / "examples" / "smtp-patterns.toml").read_text(encoding="utf-8")
    for text in (example, uncommented, '[[listener]]\naddress = "127.0.0.1:25"\n' + patterns):
        assert _violations(schema, tomllib.loads(text), schema["$defs"]) == []


def test_schema_rejects_bad_shapes_types_and_ranges() -> None:
    schema = _schema()
    bad = {
        "listener": [{"max-errors": 0, "role": "relay", "max-message-size": "5 MiB"}],
        "domain": {"*": {"retry-after": [], "max-msg-rate": "lots", "mx-rolup": True}},
        "server": {"shutdown-timeout": "5x", "pid-file": ""},
        "virtual-mta": {"a": {"domain": {"*": {"backoff-to-normal-after": "soon"}}}},
        "domain-macro": {"m": ["ok.example", 3]},
        "smtp-pattern-list": {"p": {"rules": [{"reply": "x", "action": "retry"}]}},
        "mta": {},
    }
    assert sorted(_violations(schema, bad, schema["$defs"])) == [
        ".domain-macro.m[1]: not string",
        ".domain.*.max-msg-rate: does not match the pattern",
        ".domain.*.mx-rolup: not allowed",
        ".domain.*.retry-after: too few items",
        ".listener[0].address: missing",
        ".listener[0].max-errors: out of range",
        ".listener[0].max-message-size: does not match the pattern",
        ".listener[0].role: not one of the allowed values",
        ".mta: not allowed",
        ".server.pid-file: too short",
        ".server.shutdown-timeout: does not match the pattern",
        ".smtp-pattern-list.p.rules[0].action: not one of the allowed values",
        ".virtual-mta.a.domain.*.backoff-to-normal-after: does not match the pattern",
    ]
