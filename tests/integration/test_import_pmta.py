"""``outrider import-pmta`` end to end: the big PowerMTA config becomes a TOML file that
``outrider check-config`` accepts and ``outrider run`` starts on and relays with."""

from __future__ import annotations

import re
import smtplib
import subprocess
import sys
from pathlib import Path

from tests.support.daemon import DaemonHandle, free_port, wait_port
from tests.support.dns_server import DnsTestServer
from tests.support.smtp_server import ScriptedSmtpServer

BIG = Path(__file__).parents[1] / "data" / "pmta" / "big" / "config"


def outrider(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outrider", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_import_check_run_and_relay(
    tmp_path: Path, dns_server: DnsTestServer, sink: ScriptedSmtpServer
) -> None:
    out = tmp_path / "outrider.toml"
    imported = outrider("import-pmta", str(BIG), "-o", str(out))
    assert imported.returncode == 0, imported.stderr
    assert "PowerMTA directive(s) not translated" in imported.stderr
    assert "big/config:9: run-as-root no" in imported.stderr
    assert "outrider user add app1" in imported.stderr
    assert "an-app-password" not in imported.stderr + out.read_text()

    checked = outrider("check-config", "-c", str(out))
    assert checked.returncode == 0, checked.stderr

    # Rewrite what the test machine cannot have: ports, directories, the relay target.
    port = free_port()
    text = out.read_text()
    text = text.replace('"0.0.0.0:25"', f'"127.0.0.1:{port}"')
    text = text.replace('"127.0.0.1:2525"', f'"127.0.0.1:{free_port()}"')
    text = text.replace('"/var/spool/pmta"', f'"{tmp_path / "spool"}"')
    text = text.replace('"/var/log/pmta"', f'"{tmp_path / "log"}"')
    text = re.sub(r'route = "10\.1\.2\.3:2525"', f'route = "{sink.host}:{sink.port}"', text)
    text += f'\n[dns]\nnameservers = ["{dns_server.address[0]}:{dns_server.address[1]}"]\n'
    out.write_text(text)
    assert outrider("check-config", "-c", str(out)).returncode == 0

    handle = DaemonHandle(workdir=tmp_path, config_path=out, host="127.0.0.1", port=port)
    try:
        handle.start()
        wait_port("127.0.0.1", port)
        message = (
            b"From: app@example.com\r\nTo: someone@relay.example.org\r\n"
            b"Subject: imported\r\nX-Virtual-MTA: default\r\n\r\nhello from PowerMTA land\r\n"
        )
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
            client.sendmail("app@example.com", ["someone@relay.example.org"], message)
        [received] = sink.wait_for_messages_sync(1, timeout=20)
        assert received.rcpts == ("someone@relay.example.org",)
        assert b"hello from PowerMTA land" in received.data
        assert b"DKIM-Signature:" in received.data  # domain-key example.com was imported
        assert b"X-Virtual-MTA" not in received.data
    finally:
        handle.stop()


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("smtp-listener 0/0:25\n<domain gmail.com>\nmax-smtp-out 1\n")
    result = outrider("import-pmta", str(tmp_path / "config"))
    assert result.returncode == 1
    assert f"{tmp_path}/config:2: <domain> is never closed" in result.stderr
    assert result.stdout == ""
