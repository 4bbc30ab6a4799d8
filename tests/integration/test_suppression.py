"""The suppression list against the real daemon (one receiver process): the CLI with the
daemon stopped and running, smtplib submissions, the HTTP API, auto-add from a hard
bounce, the accounting log, and a restart."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.daemon import DaemonHandle, free_port, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

NO_USER = "550 5.1.1 no such user here"


@pytest.fixture
def sink(mx_port: int) -> Iterator[ScriptedSmtpServer]:
    server = ScriptedSmtpServer(
        ServerScript(rcpt_replies={"nouser@example.org": NO_USER}),
        host="127.0.0.2",
        port=mx_port,
    )
    with server.run_in_thread() as running:
        yield running


@pytest.fixture
def daemon(make_daemon: Any, sink: ScriptedSmtpServer) -> DaemonHandle:
    http_port = free_port()
    handle: DaemonHandle = make_daemon(
        receiver_processes=1, extra=f'[http]\naddress = "127.0.0.1:{http_port}"\n'
    )
    handle.http_port = http_port  # type: ignore[attr-defined]
    return handle


def cli(d: DaemonHandle, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outrider", "suppression", *args, "-c", str(d.config_path)],
        cwd=d.workdir,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=30,
    )


def api(d: DaemonHandle, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{d.http_port}{path}"  # type: ignore[attr-defined]
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def send(d: DaemonHandle, *rcpts: str, sender: str = "me@sender.test") -> None:
    with smtplib.SMTP(d.host, d.port, timeout=20) as s:
        s.sendmail(sender, list(rcpts), b"Subject: suppression\r\n\r\nhello\r\n")


def rows_for(d: DaemonHandle, rcpt: str, kind: str) -> list[dict[str, str]]:
    return [r for r in d.accounting_rows() if r["rcpt"] == rcpt and r["type"] == kind]


def delivered_to(sink: ScriptedSmtpServer) -> list[str]:
    return sorted(r for m in sink.messages if m.mail_from for r in m.rcpts)


def test_suppression_end_to_end(daemon: DaemonHandle, sink: ScriptedSmtpServer) -> None:
    d = daemon
    # written with the daemon stopped, straight to the file
    done = cli(d, "add", "Gone@Example.org", "--scope", "sender.test", "--reason", "bad-mailbox")
    assert done.returncode == 0, done.stderr
    assert "suppressed gone@example.org (sender.test, bad-mailbox)" in done.stdout
    assert cli(d, "add", "not an address").returncode == 1
    d.start()

    send(d, "gone@example.org", "ok@example.org")
    wait_until(lambda: delivered_to(sink) == ["ok@example.org"], what="ok delivered")
    wait_until(lambda: rows_for(d, "gone@example.org", "b"), what="b row")
    [row] = rows_for(d, "gone@example.org", "b")
    assert (row["dsnStatus"], row["bounceCat"]) == ("5.7.1", "suppressed")
    assert row["dsnDiag"].startswith("550 5.7.1 <gone@example.org> is suppressed (bad-mailbox, ")
    # another sender domain's mail is not suppressed by sender.test's list
    send(d, "gone@example.org", sender="me@example.org")
    wait_until(lambda: "gone@example.org" in delivered_to(sink), what="other sender delivered")

    # the running daemon sees a CLI change at once
    assert cli(d, "add", "late@example.org", "--global", "--reason", "complaint").returncode == 0
    send(d, "late@example.org", "ok2@example.org")
    wait_until(lambda: "ok2@example.org" in delivered_to(sink), what="ok2 delivered")
    wait_until(lambda: rows_for(d, "late@example.org", "b"), what="late b row")
    assert "late@example.org" not in delivered_to(sink)

    # the HTTP API
    status, body = api(
        d,
        "POST",
        "/api/v1/suppressions",
        {
            "addresses": ["a@example.org", "b@example.org"],
            "scope": "sender.test",
            "reason": "unsubscribe",
        },
    )
    assert (status, body["added"]) == (200, 2), body
    status, body = api(d, "POST", "/api/v1/suppressions", {"address": "bad address"})
    assert status == 400 and body["errors"][0]["address"] == "bad address", body
    status, body = api(
        d, "POST", "/api/v1/suppressions", {"address": "x@example.org", "reason": "?"}
    )
    assert (status, body["field"]) == (400, "reason")
    status, body = api(d, "GET", "/api/v1/suppressions?scope=sender.test&limit=2")
    assert [e["address"] for e in body["entries"]] == ["a@example.org", "b@example.org"]
    assert body["total"] == 3
    status, body = api(d, "GET", "/api/v1/suppressions?scope=sender.test&after=b%40example.org")
    assert [e["address"] for e in body["entries"]] == ["gone@example.org"]
    status, body = api(d, "GET", f"/api/v1/suppressions/{quote('A@example.org')}")
    assert status == 200 and body["entries"][0]["reason"] == "unsubscribe"
    status, body = api(d, "DELETE", "/api/v1/suppressions/b@example.org?scope=sender.test")
    assert (status, body) == (200, {"removed": 1})
    assert api(d, "DELETE", "/api/v1/suppressions/b@example.org")[0] == 404
    assert api(d, "GET", "/api/v1/suppressions/b@example.org")[0] == 404
    send(d, "a@example.org", "b@example.org")
    wait_until(lambda: "b@example.org" in delivered_to(sink), what="b delivered")
    wait_until(lambda: rows_for(d, "a@example.org", "b"), what="a b row")

    # auto-add: a hard bounce for a bad mailbox suppresses it for the sender domain
    send(d, "nouser@example.org")
    wait_until(lambda: rows_for(d, "nouser@example.org", "b"), what="nouser bounced")
    wait_until(
        lambda: "nouser@example.org\tsender.test\tbad-mailbox" in cli(d, "list").stdout,
        what="auto-added",
    )
    time.sleep(0.5)
    # no DSN ever went out for a suppressed recipient (the only one is nouser's)
    dsns = [m for m in sink.messages if not m.mail_from]
    assert all(b"suppressed" not in m.data for m in dsns)
    assert all(b"nouser@example.org" in m.data for m in dsns)

    # restart: the list is still there and still enforced
    assert d.stop() == 0
    listed = cli(d, "list", "--scope", "sender.test")
    assert listed.stdout.count("\n") == 3, listed.stdout  # a, gone, nouser
    d.start()
    before = len(rows_for(d, "gone@example.org", "b"))
    send(d, "gone@example.org", "ok3@example.org")
    wait_until(lambda: "ok3@example.org" in delivered_to(sink), what="ok3 delivered")
    wait_until(lambda: len(rows_for(d, "gone@example.org", "b")) == before + 1, what="b row")
    exported = cli(d, "export")
    assert exported.stdout.splitlines()[0] == "address,scope,reason,added,source"
    assert cli(d, "remove", "gone@example.org").returncode == 0
    assert cli(d, "remove", "gone@example.org").returncode == 1
    imported = cli(d, "import", "-", stdin="address\nz@example.org\nnope\n")
    assert imported.returncode == 1
    assert "-: line 3: not an address: 'nope'" in imported.stderr
    assert "imported 1 address(es), 1 bad line(s)" in imported.stdout
