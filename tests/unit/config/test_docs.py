"""The bundled example config and docs/config.md stay consistent with the code."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from outrider.config.loader import known_keys, load_config, parse_config
from outrider.config.model import Config, DomainPolicy
from outrider.inbound.tls import generate_self_signed

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "outrider.toml"
DOCS = ROOT / "docs" / "config.md"

_HEADING = re.compile(r"^## \[\[?([\w-]+)")
_SUBHEADING = re.compile(r"^### `([\w-]+)` entries")
_ROW = re.compile(r"^\| `([a-z0-9-]+)` \|([^|]*)\|([^|]*)\|")
# Tables whose documented defaults can be checked by setting them in isolation.
_CHECKABLE = {"server", "dns", "listener", "relay", "domain", "auth", "mta-sts"}


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
    assert checked == 64  # the others are prose (FQDN, none, required, role-dependent)


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
