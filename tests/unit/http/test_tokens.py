"""Bearer tokens: stored as hashes, 0600, atomic rewrite, re-read on change; the CLI."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest

from outrider.cli import _parser
from outrider.http import tokens
from outrider.http.token_cli import run_token_command


def test_add_stores_only_a_hash_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tokens"
    token = tokens.add(path, "grafana", "monitor")
    assert token.startswith(tokens.PREFIX) and len(token) > 40
    text = path.read_text()
    assert token not in text and tokens.digest(token) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [entry] = tokens.load(path)
    assert (entry.name, entry.role) == ("grafana", "monitor")
    assert tokens.role_of([entry], token) == "monitor"
    assert tokens.role_of([entry], token + "x") is None
    assert list(path.parent.iterdir()) == [path]  # no temp file left


def test_names_roles_and_duplicates_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    tokens.add(path, "a", "admin")
    with pytest.raises(tokens.TokenError, match="exists"):
        tokens.add(path, "a", "monitor")
    with pytest.raises(tokens.TokenError, match="role"):
        tokens.add(path, "b", "root")
    with pytest.raises(tokens.TokenError, match="bad token name"):
        tokens.add(path, "a b\n", "admin")
    with pytest.raises(tokens.TokenError, match="no token named"):
        tokens.delete(path, "zzz")
    tokens.delete(path, "a")
    assert tokens.load(path) == []


def test_a_broken_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("{not json")
    with pytest.raises(tokens.TokenError, match="not JSON"):
        tokens.load(path)
    path.write_text(json.dumps({"tokens": [{"name": "x", "role": "god"}]}))
    with pytest.raises(tokens.TokenError):
        tokens.load(path)


def test_cache_rereads_on_change_and_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    errors: list[str] = []
    cache = tokens.TokenCache(path, on_error=errors.append)
    assert cache.role("otk_x") is None  # no file: no token
    first = tokens.add(path, "one", "admin")
    assert cache.role(first) == "admin"
    second = tokens.add(path, "two", "monitor")
    assert cache.role(second) == "monitor"
    tokens.delete(path, "one")
    assert cache.role(first) is None
    path.write_text("garbage")
    os.utime(path, ns=(1, 1))
    assert cache.role(second) is None and errors


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = run_token_command(_parser().parse_args(["token", *argv]), out)
    return code, out.getvalue()


def test_cli_add_prints_the_token_last_then_list_and_del(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "tokens")
    code, out = run_cli("add", "ci", "--role", "admin", "--tokens-file", path)
    assert code == 0
    token = out.strip().splitlines()[-1]
    assert tokens.role_of(tokens.load(Path(path)), token) == "admin"
    code, out = run_cli("list", "--tokens-file", path)
    assert code == 0 and "ci" in out and "admin" in out and token not in out
    assert run_cli("del", "ci", "--tokens-file", path)[0] == 0
    assert run_cli("del", "ci", "--tokens-file", path)[0] == 1
    assert "no token named 'ci'" in capsys.readouterr().err


def test_cli_reads_the_tokens_file_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "outrider.toml"
    config.write_text(
        f'[[listener]]\naddress = "127.0.0.1:2525"\n[http]\ntokens-file = "{tmp_path / "t.json"}"\n'
    )
    code, _ = run_cli("add", "x", "--role", "monitor", "-c", str(config))
    assert code == 0 and (tmp_path / "t.json").exists()


def test_inject_tokens_and_their_names(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    token = tokens.add(path, "campaigns", "inject")
    cache = tokens.TokenCache(path)
    assert cache.role(token) == "inject" and cache.name(token) == "campaigns"
    assert cache.name("otk_unknown") is None
    with pytest.raises(tokens.TokenError, match="admin, monitor, inject"):
        tokens.add(path, "x", "root")
