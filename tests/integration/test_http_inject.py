"""HTTP injection against the real daemon (a receiver process, so the API's intake in
the delivery process is the one used): rights, validation, personalised delivery to a
loopback sink, accounting, and a 1,000-recipient request."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import SINK_HOSTS, common_free_port
from tests.support.daemon import DaemonHandle, free_port, rows, wait_until, write_config
from tests.support.dns_server import DnsTestServer
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

PATH = "/api/v1/messages"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsTestServer]:
    server = DnsTestServer(
        {
            "example.org": {"MX": [(10, "mx1.example.org")]},
            "mx1.example.org": {"A": ["127.0.0.2"]},
        },
        zones=["org", "test"],
    )
    server.start_in_thread()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sink() -> Iterator[ScriptedSmtpServer]:
    server = ScriptedSmtpServer(ServerScript(), host="127.0.0.2", port=common_free_port(SINK_HOSTS))
    with server.run_in_thread() as running:
        yield running


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, dns: DnsTestServer, sink: ScriptedSmtpServer
) -> Iterator[DaemonHandle]:
    http_port = free_port()
    handle = write_config(
        tmp_path_factory.mktemp("inject"),
        port=free_port(),
        dns=dns.address,
        receiver_processes=1,
        domain_defaults=f"smtp-port = {sink.port}",
        extra=(
            f'[http]\naddress = "127.0.0.1:{http_port}"\nmax-request-size = "1M"\n'
            "admin-networks = []\n"
            '[accounting]\nrecords = ["d", "b", "r"]\n'
        ),
    )
    handle.http_port = http_port  # type: ignore[attr-defined]
    handle.start()
    yield handle
    handle.kill()


def token_add(d: DaemonHandle, name: str, role: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "outrider", "token", "add", name, "--role", role,
         "-c", str(d.config_path)],
        cwd=d.workdir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def tokens(daemon: DaemonHandle) -> dict[str, str]:
    return {role: token_add(daemon, f"t-{role}", role) for role in ("admin", "monitor", "inject")}


def call(
    d: DaemonHandle,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{d.http_port}{path}"  # type: ignore[attr-defined]
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def campaign(tag: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "envelope_sender": "bounces@news.example.com",
        "recipients": [
            {
                "email": f"{tag}{i}@example.org",
                "name": f"Reader {i}",
                "substitutions": {"first": f"First{i}"},
            }
            for i in range(n)
        ],
        "substitutions": {"offer": "two for one"},
        "content": {
            "from": {"email": "news@news.example.com", "name": "News"},
            "subject": "Hello {{ first }}",
            "text_body": "Dear {{ name }}, {{ offer }} for {{ email }}",
            "html_body": "<p>Dear {{ first }}</p>",
            "headers": {"List-Unsubscribe": "<mailto:unsub@news.example.com?subject={{ email }}>"},
            "attachments": [
                {
                    "file_name": "a.txt",
                    "content_type": "text/plain",
                    "data": base64.b64encode(b"attached").decode(),
                }
            ],
        },
        "job_id": f"job-{tag}",
        **extra,
    }


def test_rights(daemon: DaemonHandle, tokens: dict[str, str]) -> None:
    status, body = call(daemon, "POST", PATH, campaign("rights", 1))
    assert status == 401
    status, body = call(daemon, "POST", PATH, campaign("rights", 1), token=tokens["monitor"])
    assert status == 403 and "inject" in body["error"]
    status, body = call(daemon, "GET", "/api/v1/status", token=tokens["inject"])
    assert status == 403 and "only submit" in body["error"]
    assert call(daemon, "GET", "/api/v1/status", token=tokens["monitor"])[0] == 200


def test_invalid_requests_queue_nothing(daemon: DaemonHandle, tokens: dict[str, str]) -> None:
    before = set(daemon.spool_files())
    bad = campaign("bad", 5)
    bad["recipients"][3]["email"] = "not an address"
    bad["recipients"][4]["email"] = "x@-bad-.org"
    status, body = call(daemon, "POST", PATH, bad, token=tokens["inject"])
    assert status == 400
    assert {e["field"] for e in body["errors"]} == {"recipients[3].email", "recipients[4].email"}
    bad = campaign("bad", 2)
    bad["content"]["subject"] = "{{ first | nosuchfilter }}"
    status, body = call(daemon, "POST", PATH, bad, token=tokens["inject"])
    assert status == 400 and body["errors"][0]["field"] == "content.subject"
    status, body = call(daemon, "POST", PATH, raw=b"{nope", token=tokens["inject"])
    assert status == 400 and "not JSON" in body["errors"][0]["error"]
    failing = campaign("bad", 3)
    failing["content"]["text_body"] = "{{ 1 // (0 if email == 'bad2@example.org' else 1) }}"
    status, body = call(daemon, "POST", PATH, failing, token=tokens["inject"])
    assert status == 400 and body["errors"][0]["error"].startswith("recipients[2]:")
    huge = campaign("big", 1)
    huge["content"]["text_body"] = "x" * (1024 * 1024 + 10)
    status, body = call(daemon, "POST", PATH, huge, token=tokens["inject"])
    assert status == 413
    time.sleep(0.3)
    assert set(daemon.spool_files()) == before


def test_three_personalised_messages(
    daemon: DaemonHandle, tokens: dict[str, str], sink: ScriptedSmtpServer
) -> None:
    status, body = call(daemon, "POST", PATH, campaign("p", 3), token=tokens["inject"])
    assert status == 200, body
    assert body["success_count"] == 3 and body["failure_count"] == 0
    assert set(body["queue_ids"]) == {f"p{i}@example.org" for i in range(3)}

    def ours() -> list[Any]:
        return [m for m in sink.messages if m.rcpts[0].startswith("p")]

    wait_until(lambda: len(ours()) == 3, timeout=20, what="3 deliveries")
    for m in ours():
        i = int(m.rcpts[0][1])
        assert m.mail_from == "bounces@news.example.com"
        msg = email.message_from_bytes(m.data, policy=email.policy.default)
        assert msg["Subject"] == f"Hello First{i}"
        assert msg["To"] == f"Reader {i} <p{i}@example.org>"
        assert msg["Message-ID"] == f"<{body['queue_ids'][m.rcpts[0]]}@mta.outrider.test>"
        unsubscribe = f"<mailto:unsub@news.example.com?subject=p{i}@example.org>"
        assert msg["List-Unsubscribe"] == unsubscribe
        assert msg.get_content_type() == "multipart/mixed"
        text = msg.get_body(("plain",))
        assert text is not None
        assert f"Dear Reader {i}, two for one for p{i}@example.org" in text.get_content()
        assert "X-Job" not in msg

    def delivered() -> list[dict[str, str]]:
        return [r for r in rows(daemon, "d") if r["rcpt"].startswith("p")]

    wait_until(lambda: len(delivered()) == 3, timeout=10, what="3 accounting rows")
    for row in delivered():
        assert row["srcType"] == "api"
        assert row["jobId"] == "job-p"


def test_refusal_is_a_failure_not_an_error(daemon: DaemonHandle, tokens: dict[str, str]) -> None:
    data = campaign("v", 2, virtual_mta="no-such-vmta")
    status, body = call(daemon, "POST", PATH, data, token=tokens["inject"])
    assert status == 400 and body["errors"][0]["field"] == "virtual_mta"


def test_a_thousand_recipients(daemon: DaemonHandle, tokens: dict[str, str]) -> None:
    started = time.monotonic()
    status, body = call(daemon, "POST", PATH, campaign("k", 1000), token=tokens["admin"])
    assert status == 200, body
    assert body["success_count"] == 1000 and len(set(body["queue_ids"].values())) == 1000
    assert time.monotonic() - started < 30
