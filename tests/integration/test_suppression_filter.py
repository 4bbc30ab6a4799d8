"""The suppression list's in-memory filter inside a real daemon: built in the background
after start, then kept current with CLI adds (no rebuild) while removals are still
confirmed by SQLite; mail submitted with smtplib throughout."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.daemon import DaemonHandle, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

ENTRIES = 20_000


@pytest.fixture
def sink(mx_port: int) -> Iterator[ScriptedSmtpServer]:
    server = ScriptedSmtpServer(ServerScript(), host="127.0.0.2", port=mx_port)
    with server.run_in_thread() as running:
        yield running


def cli(d: DaemonHandle, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outrider", "suppression", *args, "-c", str(d.config_path)],
        cwd=d.workdir,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


def send(d: DaemonHandle, *rcpts: str) -> None:
    with smtplib.SMTP(d.host, d.port, timeout=20) as s:
        s.sendmail("me@sender.test", list(rcpts), b"Subject: filter\r\n\r\nhello\r\n")


def delivered(sink: ScriptedSmtpServer) -> set[str]:
    return {r for m in sink.messages if m.mail_from for r in m.rcpts}


def bounced(d: DaemonHandle) -> set[str]:
    return {
        r["rcpt"]
        for r in d.accounting_rows()
        if r["type"] == "b" and r.get("bounceCat") == "suppressed"
    }


def test_filter_built_and_kept_current(make_daemon: Any, sink: ScriptedSmtpServer) -> None:
    d: DaemonHandle = make_daemon(receiver_processes=1)
    csv = "".join(f"u{i}@example.org,sender.test\n" for i in range(ENTRIES))
    done = cli(d, "import", "-", stdin=csv)
    assert done.returncode == 0, done.stderr
    d.start()

    # the first message is checked by SQLite and starts the build in a worker thread
    send(d, "u1@example.org", "ok1@example.org")
    wait_until(lambda: "ok1@example.org" in delivered(sink), what="ok1 delivered")
    wait_until(lambda: "u1@example.org" in bounced(d), what="u1 suppressed")
    wait_until(
        lambda: f"filter of {ENTRIES} entries built" in d.log_text(),
        timeout=60,
        what="filter built",
    )
    # filter in use: a hit still suppresses, a miss is delivered
    send(d, "u2@example.org", "ok2@example.org")
    wait_until(lambda: "ok2@example.org" in delivered(sink), what="ok2 delivered")
    wait_until(lambda: "u2@example.org" in bounced(d), what="u2 suppressed")

    # an add from the CLI (another process) reaches the filter through the change log
    assert cli(d, "add", "late@example.org", "--global").returncode == 0
    send(d, "late@example.org", "ok3@example.org")
    wait_until(lambda: "ok3@example.org" in delivered(sink), what="ok3 delivered")
    wait_until(lambda: "late@example.org" in bounced(d), what="late suppressed")

    # a removal leaves the key in the filter, but SQLite has the last word
    assert cli(d, "remove", "u3@example.org").returncode == 0
    send(d, "u3@example.org")
    wait_until(lambda: "u3@example.org" in delivered(sink), what="u3 delivered")
    assert "u3@example.org" not in bounced(d)
    assert d.log_text().count("entries built") == 1  # kept current, never rebuilt
    assert d.stop() == 0
