"""``[[dkim]]`` in the config: keys loaded at load time, problems reported with their key path."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from outrider.config.dump import dump
from outrider.config.loader import ConfigError, parse_config
from outrider.config.model import Config
from outrider.intake import Accepted, IntakePipeline
from outrider.intake.build import dkim_signer
from outrider.intake.core import Intake
from outrider.intake.sink import HeldSink
from outrider.intake.vmta import VmtaTable
from tests.support.dkim_keys import Dns, signature_tags, verify_all
from tests.support.memory_spool import MemorySpool
from tests.unit.intake.support import MAIL, SMTP

LISTENER = '[[listener]]\naddress = "127.0.0.1:2525"\n'


@pytest.fixture(autouse=True)
def _no_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "fqdn.example.test")


def parse(text: str) -> Config:
    return parse_config(LISTENER + text, "t.toml")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def entry(path: Path, algorithm: str = "", selector: str = "s1", **more: str) -> str:
    text = f'[[dkim]]\ndomain = "Example.COM"\nselector = "{selector}"\nkey-file = "{path}"\n'
    if algorithm:
        text += f'algorithm = "{algorithm}"\n'
    return text + "".join(f"{k} = {v}\n" for k, v in more.items())


def test_no_dkim_means_no_signer() -> None:
    config = parse("")
    assert config.dkim == () and dkim_signer(config) is None


def test_entries_load_their_keys(key_files: dict[str, Path]) -> None:
    text = entry(key_files["rsa-sha256"]) + entry(
        key_files["ed25519-sha256"], "ed25519-sha256", selector="e1", subdomains="true"
    )
    config = parse(text)
    assert [(d.domain, d.selector, d.algorithm) for d in config.dkim] == [
        ("example.com", "s1", "rsa-sha256"),
        ("example.com", "e1", "ed25519-sha256"),
    ]
    assert all(d.private_key is not None for d in config.dkim)
    signer = dkim_signer(config)
    assert signer is not None and len(signer.table.keys_for("example.com")) == 2
    assert len(signer.table.keys_for("news.example.com")) == 1  # only e1 has subdomains
    assert [t["selector"] for t in dump(config)["dkim"]] == ["s1", "e1"]


def test_bad_key_file_is_a_config_error(tmp_path: Path, key_files: dict[str, Path]) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n")
    assert errors(entry(junk)) == [
        f"t.toml:6: dkim[0].key-file: {junk}: not an unencrypted PEM private key: "
        + _pem_error(junk)
    ]
    problems = errors(entry(key_files["rsa-sha256"], "ed25519-sha256"))
    assert problems == [
        f"t.toml:6: dkim[0].key-file: {key_files['rsa-sha256']}: algorithm ed25519-sha256 "
        "needs an Ed25519 key, got an RSA key"
    ]
    missing = errors(entry(tmp_path / "nope.pem"))
    assert len(missing) == 1 and "dkim[0].key-file" in missing[0]


def _pem_error(path: Path) -> str:
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        return str(exc)
    raise AssertionError


def test_other_problems(key_files: dict[str, Path]) -> None:
    rsa = key_files["rsa-sha256"]
    assert errors(entry(rsa, "rsa-sha1")) == [
        "t.toml:7: dkim[0].algorithm: must be one of 'rsa-sha256', 'ed25519-sha256', got 'rsa-sha1'"
    ]
    assert errors(entry(rsa, headers='["To", "Subject"]')) == [
        "t.toml:7: dkim[0].headers: the signed headers must include 'From'"
    ]
    assert errors(entry(rsa) + entry(rsa)) == [
        "t.toml:9: dkim[1].selector: selector 's1' of example.com is also dkim[0]'s"
    ]
    assert errors(entry(rsa, selector="bad_sel")) == [
        "t.toml:5: dkim[0].selector: not a valid selector: 'bad_sel'"
    ]


async def test_the_intake_signs_and_counts_the_signature_in_the_size(
    key_files: dict[str, Path],
) -> None:
    config = parse(entry(key_files["rsa-sha256"]))
    spool = MemorySpool()
    intake = Intake(
        IntakePipeline([]),
        spool,
        HeldSink(),
        "mx.test",
        VmtaTable(known=frozenset({"default"}), sender_defaults={}),
        dkim=dkim_signer(config),
    )
    content = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
    result = await intake.submit(SMTP, MAIL, content, queue_id="Q1")
    assert isinstance(result, Accepted)
    stored = spool.bodies["Q1"]
    assert stored.startswith(b"DKIM-Signature: ") and result.envelope.size == len(stored)
    dns = Dns()
    dns.publish("example.com", "s1", config.dkim[0].private_key)
    assert verify_all(stored, dns) == [(b"rsa-sha256", True)]
    assert signature_tags(stored)[0][b"s"] == b"s1"
