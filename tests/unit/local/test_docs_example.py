"""The worked configuration in docs/local-delivery.md loads and behaves as it says."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from outrider.config.loader import parse_config
from outrider.local.build import build_directory
from outrider.local.directory import Kind

DOC = Path(__file__).resolve().parents[3] / "docs" / "local-delivery.md"


@pytest.fixture(autouse=True)
def _no_resolver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "fqdn.example.test")
    monkeypatch.chdir(tmp_path)  # relative paths (the SRS key file) land here


def test_the_worked_example(tmp_path: Path) -> None:
    text = DOC.read_text()
    config_text = re.search(r"```toml\n(.*?)```", text, re.S)
    aliases_text = re.search(
        r"`/etc/outrider/aliases.example.com` holds.*?```\n(.*?)```", text, re.S
    )
    assert config_text and aliases_text
    (tmp_path / "tls").mkdir()
    for name in ("cert.pem", "key.pem"):
        (tmp_path / "tls" / name).write_text("placeholder\n")
    (tmp_path / "aliases.example.com").write_text(aliases_text.group(1))
    config = parse_config(config_text.group(1).replace("/etc/outrider/", f"{tmp_path}/"))
    directory = build_directory(config)
    assert directory.check() == []
    assert directory.lookup("alice+lists@example.com").mailbox == "alice"
    assert [t.mailbox for t in directory.expand("postmaster@example.com").mailboxes] == ["alice"]
    billing = directory.expand("billing@example.com")
    assert [t.mailbox for t in billing.mailboxes] == ["carol"]
    assert billing.remote == ["accounts@bookkeeper.example"]
    assert directory.lookup("anyone@example.net").kind is Kind.ALIAS  # the catch-all
    assert directory.lookup("team-request@example.com").targets == ("alice@example.com",)
    assert directory.lookup("nobody@example.com").kind is Kind.UNKNOWN
    assert directory.srs is not None and directory.srs.domain == "mx.example.com"
    bounce = directory.srs.forward("carol@example.org")
    assert directory.lookup(bounce).targets == ("carol@example.org",)
