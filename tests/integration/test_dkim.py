"""DKIM signing through the real daemon: keys made by ``outrider dkim keygen``, mail
submitted with smtplib, and the copy the loopback sink receives verified by dkimpy
against the TXT records keygen printed."""

from __future__ import annotations

import os
import signal
import smtplib
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.daemon import DaemonHandle, wait_until
from tests.support.dkim_keys import Dns, signature_tags, verify_all
from tests.support.smtp_server import ScriptedSmtpServer

MESSAGE = (
    b"From: News <news@sender.test>\r\n"
    b"To: b@example.org\r\n"
    b"Subject: Spring offer\r\n"
    b"List-Unsubscribe: <https://sender.test/u/1>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"\r\n"
    b"Hello  there\r\n"
)


def keygen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outrider", "dkim", "keygen", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def txt_text(record: str) -> tuple[str, str]:
    """(owner name, the TXT text with its strings joined) from keygen's zone-file line."""
    owner, rest = record.split(" IN TXT ", 1)
    strings = [part for i, part in enumerate(rest.split('"')) if i % 2 == 1]
    return owner, "".join(strings)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Dns, str]:
    """RSA and Ed25519 keys for sender.test (selectors r1 and e1), published; the
    ``[[dkim]]`` tables naming them."""
    dns = Dns()
    tables = ""
    for selector, algorithm in (("r1", "rsa-sha256"), ("e1", "ed25519-sha256")):
        path = tmp_path / f"{selector}.pem"
        done = keygen(
            "--domain", "sender.test", "--selector", selector,
            "--algorithm", algorithm, "--key-file", str(path),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        owner, text = txt_text(done.stdout.strip())
        assert owner == f"{selector}._domainkey.sender.test"
        dns.publish("sender.test", selector, text)
        tables += (
            f'[[dkim]]\ndomain = "sender.test"\nselector = "{selector}"\n'
            f'key-file = "{path}"\nalgorithm = "{algorithm}"\n'
        )
    return dns, tables


def test_keygen_writes_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    first = keygen("--domain", "a.test", "--selector", "s", "--key-file", str(path))
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    owner, text = txt_text(first.stdout.strip())
    assert owner == "s._domainkey.a.test" and text.startswith("v=DKIM1; k=rsa; p=")
    assert all(len(s) <= 255 for s in first.stdout.split('"')[1::2])
    before = path.read_bytes()
    again = keygen("--domain", "a.test", "--selector", "s", "--key-file", str(path))
    assert again.returncode == 1 and "--force" in again.stderr
    assert path.read_bytes() == before
    forced = keygen("--domain", "a.test", "--selector", "s", "--key-file", str(path), "--force")
    assert forced.returncode == 0 and path.read_bytes() != before


@pytest.mark.parametrize("receivers", [0, 1], ids=["single-process", "receiver-process"])
def test_submitted_mail_is_signed_with_rsa_and_ed25519(
    make_daemon: Callable[..., DaemonHandle],
    sink: ScriptedSmtpServer,
    keys: tuple[Dns, str],
    receivers: int,
) -> None:
    dns, tables = keys
    d = make_daemon(extra=tables, receiver_processes=receivers)
    d.start()
    with smtplib.SMTP(d.host, d.port, timeout=30) as client:
        assert client.sendmail("news@sender.test", ["b@example.org"], MESSAGE) == {}
    [msg] = sink.wait_for_messages_sync(1, timeout=30)
    assert verify_all(msg.data, dns) == [(b"rsa-sha256", True), (b"ed25519-sha256", True)]
    assert [t[b"s"] for t in signature_tags(msg.data)] == [b"r1", b"e1"]
    assert d.stop() == 0


def test_a_big_spilled_message_is_signed_and_verifies(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, keys: tuple[Dns, str]
) -> None:
    dns, tables = keys
    d = make_daemon(extra=tables, receiver_processes=1)
    d.edit_config('max-message-size = "1M"', 'max-message-size = "5M"')
    d.start()
    line = b"the quick brown fox  jumps over\t the lazy dog   \r\n"
    big = MESSAGE + line * (1024 * 1024 // len(line)) + b"\r\n\r\n"
    assert len(big) > 256 * 1024
    with smtplib.SMTP(d.host, d.port, timeout=60) as client:
        assert client.sendmail("news@sender.test", ["b@example.org"], big) == {}
    [msg] = sink.wait_for_messages_sync(1, timeout=60)
    assert len(msg.data) > 1024 * 1024
    assert verify_all(msg.data, dns) == [(b"rsa-sha256", True), (b"ed25519-sha256", True)]
    assert d.stop() == 0


def test_a_message_already_signed_is_not_signed_again(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, keys: tuple[Dns, str]
) -> None:
    dns, tables = keys
    d = make_daemon(extra=tables)
    d.start()
    with smtplib.SMTP(d.host, d.port, timeout=30) as client:
        client.sendmail("news@sender.test", ["b@example.org"], MESSAGE)
        [first] = sink.wait_for_messages_sync(1, timeout=30)
        client.sendmail("news@sender.test", ["b@example.org"], first.data)  # re-injected
    second = sink.wait_for_messages_sync(2, timeout=30)[1]
    assert len(signature_tags(second.data)) == 2
    assert [ok for _, ok in verify_all(second.data, dns)] == [True, True]
    assert d.stop() == 0


def test_a_bad_key_file_stops_the_start_with_a_config_error(
    make_daemon: Callable[..., DaemonHandle], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("junk\n")
    tables = f'[[dkim]]\ndomain = "sender.test"\nselector = "s"\nkey-file = "{junk}"\n'
    d = make_daemon(extra=tables)
    done = subprocess.run(
        [sys.executable, "-m", "outrider", "check-config", "-c", str(d.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "dkim[0].key-file" in done.stderr and str(junk) in done.stderr


def test_key_rotation_to_a_new_selector_on_reload(
    make_daemon: Callable[..., DaemonHandle],
    sink: ScriptedSmtpServer,
    keys: tuple[Dns, str],
    tmp_path: Path,
) -> None:
    dns, tables = keys
    path = tmp_path / "r2.pem"
    done = keygen("--domain", "sender.test", "--selector", "r2", "--key-file", str(path))
    assert done.returncode == 0, done.stderr
    dns.publish("sender.test", "r2", txt_text(done.stdout.strip())[1])
    d = make_daemon(extra=tables)
    d.start()
    with smtplib.SMTP(d.host, d.port, timeout=30) as client:
        client.sendmail("news@sender.test", ["b@example.org"], MESSAGE)
    sink.wait_for_messages_sync(1, timeout=30)
    d.edit_config('selector = "r1"', 'selector = "r2"')
    d.edit_config(str(tmp_path / "r1.pem"), str(path))
    d.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in d.log_text(), what="the reload")
    with smtplib.SMTP(d.host, d.port, timeout=30) as client:
        client.sendmail("news@sender.test", ["b@example.org"], MESSAGE)
    second = sink.wait_for_messages_sync(2, timeout=30)[1]
    assert [t[b"s"] for t in signature_tags(second.data)] == [b"r2", b"e1"]
    assert [ok for _, ok in verify_all(second.data, dns)] == [True, True]
    assert d.stop() == 0
