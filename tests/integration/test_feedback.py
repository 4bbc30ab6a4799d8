"""Bounce domains against the real daemon (one receiver process): a VERP return path on
relayed mail, a DSN to it becomes an ``rb`` row and a suppression, an ARF report an
``f`` row, a suppression and a ``complained`` event on the event stream."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from typing import Any

import pytest

from outrider.feedback.verp import decode
from tests.integration.test_http_api import EventReader
from tests.support.daemon import DaemonHandle, free_port, wait_until
from tests.support.smtp_server import ScriptedSmtpServer
from tests.unit.feedback import samples

BOUNCE = "bounce.example.com"


@pytest.fixture
def daemon(make_daemon: Any, sink: ScriptedSmtpServer) -> DaemonHandle:
    http_port = free_port()
    handle: DaemonHandle = make_daemon(
        receiver_processes=1,
        extra=(
            f'[http]\naddress = "127.0.0.1:{http_port}"\n[bounce-domain."{BOUNCE}"]\nverp = true\n'
        ),
    )
    handle.http_port = http_port  # type: ignore[attr-defined]
    handle.start()
    return handle


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def suppressed(d: DaemonHandle) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "outrider", "suppression", "list", "-c", str(d.config_path)],
        cwd=d.workdir,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_verp_dsn_and_arf(daemon: DaemonHandle, sink: ScriptedSmtpServer) -> None:
    with smtplib.SMTP(daemon.host, daemon.port, timeout=20) as s:
        s.sendmail(
            f"bounces@{BOUNCE}",
            ["ann@example.org"],
            b"X-Job: spring\r\nMessage-ID: <m1@news.example.com>\r\nSubject: offers\r\n\r\nHi\r\n",
        )
        # Several recipients: one return path cannot name them all; the sender stays.
        s.sendmail(
            f"bounces@{BOUNCE}", ["b1@example.org", "b2@example.org"], b"Subject: x\r\n\r\nx\r\n"
        )
    [first, second] = sink.wait_for_messages_sync(2, timeout=20)
    verp = next(m for m in (first, second) if m.rcpts == ("ann@example.org",)).mail_from
    other = next(m for m in (first, second) if m.rcpts != ("ann@example.org",))
    assert other.mail_from == f"bounces@{BOUNCE}"
    assert verp.startswith("bounces+") and verp.endswith(f"@{BOUNCE}")
    secret = (daemon.workdir / "var" / "verp-secret").read_text().strip().encode()
    assert decode(secret, verp).recipient == "ann@example.org"
    assert (daemon.workdir / "var" / "verp-secret").stat().st_mode & 0o777 == 0o600

    reader = EventReader(daemon, "?types=bounced,complained")
    try:
        wait_until(lambda: bool(reader.head), 10, "event stream open")
        with smtplib.SMTP(daemon.host, daemon.port, timeout=20) as s:
            s.sendmail("", [verp], crlf(samples.POSTFIX))  # a DSN from the recipient's MX
            s.sendmail("", [f"fbl@{BOUNCE}"], crlf(samples.ARF_RFC5965))
            s.sendmail("", [f"junk@{BOUNCE}"], b"Subject: hi\r\n\r\nnot a bounce\r\n")
        wait_until(lambda: len(reader.events) >= 2, 20, "bounced and complained events")
    finally:
        reader.close()
    bounced = next(e for e in reader.events if e["type"] == "bounced")
    assert bounced["async"] is True and bounced["rcpt"] == "ann@example.org"
    complained = next(e for e in reader.events if e["type"] == "complained")
    assert (complained["rcpt"], complained["sender_domain"]) == (
        "user@example.com",
        "news.example.com",
    )

    wait_until(lambda: any(r["type"] == "f" for r in daemon.accounting_rows()), 10, "f row")
    [rb] = [r for r in daemon.accounting_rows() if r["type"] == "rb"]
    assert (rb["rcpt"], rb["bounceCat"], rb["jobId"], rb["dsnStatus"]) == (
        "ann@example.org",
        "bad-mailbox",
        "spring",
        "5.1.1",
    )
    assert rb["orig"] == f"bounces@{BOUNCE}"
    [f] = [r for r in daemon.accounting_rows() if r["type"] == "f"]
    assert (f["rcpt"], f["dsnDiag"]) == ("user@example.com", "abuse")
    listed = suppressed(daemon)
    assert "ann@example.org" in listed and "bad-mailbox" in listed
    assert "user@example.com" in listed and "complaint" in listed
    # Nothing was relayed or bounced back: the sink saw only the two messages.
    assert len(sink.messages) == 2
    wait_until(lambda: "nothing to record" in daemon.log_text(), 10, "ignored mail logged")
