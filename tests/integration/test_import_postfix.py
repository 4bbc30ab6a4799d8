"""``outrider import-postfix`` end to end: a Postfix directory with Maildir mailboxes,
aliases, a relay domain routed by transport_maps and submission services in master.cf is
imported, passes ``outrider check-config``, and the real daemon running the result
delivers into Maildir, relays to a loopback sink and serves the submission ports."""

from __future__ import annotations

import mailbox
import shutil
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonHandle, free_port, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

DATA = Path(__file__).parent.parent / "data" / "postfix"


def outrider(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outrider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def partner_sink() -> Iterator[ScriptedSmtpServer]:
    server = ScriptedSmtpServer(ServerScript(), host="127.0.0.2", port=free_port("127.0.0.2"))
    with server.run_in_thread() as running:
        yield running


def test_imported_config_runs(tmp_path: Path, partner_sink: ScriptedSmtpServer) -> None:
    postfix = tmp_path / "postfix"
    shutil.copytree(DATA / "submission", postfix)
    mail = tmp_path / "mail"
    main_cf = postfix / "main.cf"
    main_cf.write_text(main_cf.read_text().replace("/var/mail/vhosts", str(mail)))
    (postfix / "transport").write_text(f"partner.test smtp:[127.0.0.2]:{partner_sink.port}\n")
    made = outrider(
        "gen-cert",
        "--cert",
        "postfix/tls/cert.pem",
        "--key",
        "postfix/tls/key.pem",
        "--hostname",
        "mail.corp.test",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr

    imported = outrider("import-postfix", str(postfix), "-o", "outrider.toml", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "main.cf:22: smtpd_sasl_type = dovecot" in imported.stderr  # the summary
    config = tmp_path / "outrider.toml"
    checked = outrider("check-config", "-c", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr

    ports = {25: free_port(), 587: free_port(), 465: free_port()}
    text = config.read_text()
    for old, new in ports.items():
        text = text.replace(f'"0.0.0.0:{old}"', f'"127.0.0.1:{new}"')
    config.write_text(text)
    daemon = DaemonHandle(tmp_path, config, "127.0.0.1", ports[25], receiver_processes=1)
    try:
        daemon.start()
        with smtplib.SMTP("127.0.0.1", ports[25], timeout=10) as client:
            client.ehlo("client.test")
            assert client.mail("someone@outside.test")[0] == 250
            assert client.rcpt("nobody@corp.test")[0] == 550
            assert client.rcpt("sales@corp.test")[0] == 250  # alias of alice and bob
            assert client.rcpt("bob+news@corp.test")[0] == 250  # recipient_delimiter = +
            assert client.rcpt("ann@partner.test")[0] == 250  # relay_domains
            code, reply = client.data(b"Subject: moved\r\n\r\nhello from Postfix land\r\n")
            assert code == 250, reply

        def boxes(user: str) -> int:
            path = mail / "corp.test" / user
            # cur/ is made last: before it exists the box is being created
            return len(mailbox.Maildir(str(path), create=False)) if (path / "cur").exists() else 0

        wait_until(lambda: boxes("alice") == 1 and boxes("bob") == 2, 30, "Maildir delivery")
        [relayed] = partner_sink.wait_for_messages_sync(1, timeout=30)
        assert relayed.rcpts == ("ann@partner.test",)
        assert b"hello from Postfix land" in relayed.data

        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", ports[587], timeout=10) as client:
            client.ehlo("laptop.test")
            assert client.has_extn("starttls") and not client.has_extn("auth")
            client.starttls(context=unverified)
            client.ehlo("laptop.test")
            assert client.has_extn("auth")
            assert client.mail("alice@corp.test")[0] == 530  # AUTH first, as on Postfix
        with smtplib.SMTP_SSL("127.0.0.1", ports[465], timeout=10, context=unverified) as client:
            client.ehlo("laptop.test")
            assert client.has_extn("auth")
    finally:
        assert daemon.stop() == 0
