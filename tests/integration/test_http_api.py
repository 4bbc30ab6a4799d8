"""The HTTP management API against the real daemon (uvloop, a receiver process), as an
operator's scripts would use it: curl-like requests on a loopback port.

One daemon serves the whole module; tests that change its config put it back.
"""

from __future__ import annotations

import json
import smtplib
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.conftest import SINK_HOSTS, common_free_port
from tests.support.daemon import DaemonHandle, control, free_port, wait_until, write_config
from tests.support.dns_server import DnsTestServer
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript
from tests.unit.http.test_metrics import parse, value

LATER = "451 4.7.1 try again later"
QUEUE = "mx:mx1.example.org/default"  # mx-rollup names example.org's queue by its MX


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsTestServer]:
    server = DnsTestServer(
        {
            "example.org": {"MX": [(10, "mx1.example.org")]},
            "mx1.example.org": {"A": ["127.0.0.2"]},
            "sender.test": {"MX": [(10, "mx1.example.org")]},
        },
        zones=["org", "test"],
    )
    server.start_in_thread()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sink() -> Iterator[ScriptedSmtpServer]:
    server = ScriptedSmtpServer(
        ServerScript(rcpt_replies={"later@example.org": LATER}),
        host="127.0.0.2",
        port=common_free_port(SINK_HOSTS),
    )
    with server.run_in_thread() as running:
        yield running


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, dns: DnsTestServer, sink: ScriptedSmtpServer
) -> Iterator[DaemonHandle]:
    http_port = free_port()
    handle = write_config(
        tmp_path_factory.mktemp("http"),
        port=free_port(),
        dns=dns.address,
        receiver_processes=1,
        domain_defaults=f"smtp-port = {sink.port}",
        extra=(
            '[domain."example.org"]\nretry-after = ["1h"]\n'
            f'[http]\naddress = "127.0.0.1:{http_port}"\nmax-request-size = "4K"\n'
            "metrics-top-queues = 5\n"
        ),
    )
    handle.http_port = http_port  # type: ignore[attr-defined]
    handle.start()
    yield handle
    handle.kill()


def api(
    d: DaemonHandle,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """One request; (status, decoded JSON or text, headers)."""
    url = f"http://127.0.0.1:{d.http_port}{path}"  # type: ignore[attr-defined]
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    sent = {"Content-Type": "application/json"} if method in ("POST", "DELETE") else {}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    sent |= headers or {}
    req = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, text, got = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        status, text, got = err.code, err.read(), dict(err.headers)
    kind = got.get("Content-Type", "")
    return status, json.loads(text) if kind.startswith("application/json") else text.decode(), got


def get(d: DaemonHandle, path: str, **kw: Any) -> Any:
    status, body, _ = api(d, "GET", path, **kw)
    assert status == 200, body
    return body


def send(d: DaemonHandle, rcpt: str) -> None:
    with smtplib.SMTP(d.host, d.port, timeout=20) as s:
        s.sendmail("me@sender.test", [rcpt], b"Subject: http api\r\n\r\nhello\r\n")


def queued(d: DaemonHandle, rcpt: str) -> list[dict[str, Any]]:
    return list(get(d, f"/api/v1/messages?rcpt={quote(rcpt)}")["recipients"])


def rcpt_attempts(sink: ScriptedSmtpServer, rcpt: str) -> int:
    return sum(
        c.lower().startswith(f"rcpt to:<{rcpt}")
        for s in list(sink.sessions)
        for c in list(s.commands)
    )


class EventReader:
    """Follows ``/api/v1/events`` in a thread, collecting the decoded ``data:`` objects."""

    def __init__(self, d: DaemonHandle, query: str = "") -> None:
        port = d.http_port  # type: ignore[attr-defined]
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(
            f"GET /api/v1/events{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        )
        self.events: list[dict[str, Any]] = []
        self.head = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buffer = b""
        try:
            while chunk := self.sock.recv(65536):
                buffer += chunk
                if not self.head and b"\r\n\r\n" in buffer:
                    self.head, buffer = buffer.split(b"\r\n\r\n", 1)
                for line in buffer.split(b"\n"):
                    if line.startswith(b"data: ") and line.endswith(b"}"):
                        item = json.loads(line[6:])
                        if item not in self.events:
                            self.events.append(item)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


@contextmanager
def access_config(d: DaemonHandle, text: str) -> Iterator[None]:
    """Run with extra [http] keys (applied by a reload), then put the config back."""
    original = d.config_path.read_text()
    d.edit_config("[http]\n", f"[http]\n{text}\n")
    try:
        assert control(d, {"cmd": "reload"})["ok"]
        yield
    finally:
        d.config_path.write_text(original)
        assert control(d, {"cmd": "reload"})["ok"]


def token_add(d: DaemonHandle, name: str, role: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "outrider", "token", "add", name, "--role", role,
         "-c", str(d.config_path)],
        cwd=d.workdir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


# -- the tests ----------------------------------------------------------------------------


def test_read_only_routes(daemon: DaemonHandle) -> None:
    assert get(daemon, "/api/v1/whoami")["role"] == "admin"
    status = get(daemon, "/api/v1/status")["status"]
    assert status["uptime"] >= 0 and status["spool"]["messages"] >= 0
    traffic = get(daemon, "/api/v1/traffic")
    assert traffic["bucket_seconds"] == 60 and len(traffic["series"]) == 60
    assert isinstance(get(daemon, "/api/v1/queues?sort=age&max=5")["queues"], list)
    assert isinstance(get(daemon, "/api/v1/vmtas")["vmtas"], list)
    assert isinstance(get(daemon, "/api/v1/jobs")["jobs"], list)
    assert "domains" in get(daemon, "/api/v1/topdomains?max=3")
    assert get(daemon, "/api/v1/config")["config"]["http"]["max-request-size"]
    route = get(daemon, "/api/v1/route?address=someone%40example.org")["route"]
    assert route["domain"] == "example.org"
    doc = get(daemon, "/api/v1/openapi.json")
    assert doc["openapi"].startswith("3.") and "/api/v1/queues/{queue}/retry" in doc["paths"]


def test_pause_holds_mail_and_resume_delivers_it_with_events(
    daemon: DaemonHandle, sink: ScriptedSmtpServer
) -> None:
    status, body, _ = api(daemon, "POST", f"/api/v1/queues/{quote(QUEUE, safe='')}/pause")
    assert status == 200, body
    try:
        held_then_resumed(daemon, sink)
    finally:  # the other tests deliver through this queue
        api(daemon, "POST", f"/api/v1/queues/{quote(QUEUE, safe='')}/resume")


def held_then_resumed(daemon: DaemonHandle, sink: ScriptedSmtpServer) -> None:
    send(daemon, "held@example.org")
    wait_until(lambda: bool(queued(daemon, "held@example.org")), 20, "queued")
    [row] = get(daemon, "/api/v1/queues?mode=paused")["queues"]
    assert (row["queue"], row["recipients"], row["mode"]) == (QUEUE, 1, "paused")
    detail = get(daemon, f"/api/v1/queues/{quote(QUEUE, safe='')}")
    assert (detail["queue"], detail["mode"], detail["recipients"]) == (QUEUE, "paused", 1)
    assert detail["shaping"]["paused"] is True
    [rcpt] = queued(daemon, "held@example.org")
    message = get(daemon, f"/api/v1/messages/{rcpt['id']}")["message"]
    assert "Subject: http api" in message["headers"]
    time.sleep(0.5)
    assert not any("held@example.org" in m.rcpts for m in sink.messages)

    reader = EventReader(daemon, "?types=delivered")
    try:
        wait_until(lambda: bool(reader.head), 10, "event stream open")
        assert b"text/event-stream" in reader.head
        status, body, _ = api(daemon, "POST", f"/api/v1/queues/{quote(QUEUE, safe='')}/resume")
        assert status == 200, body
        wait_until(lambda: any(e["rcpt"] == "held@example.org" for e in reader.events), 20, "event")
    finally:
        reader.close()
    event = next(e for e in reader.events if e["rcpt"] == "held@example.org")
    assert (event["type"], event["id"], event["queue"]) == ("delivered", rcpt["id"], QUEUE)
    assert all(e["type"] == "delivered" for e in reader.events)
    assert any("held@example.org" in m.rcpts for m in sink.messages)


def test_retry_then_delete_a_deferred_message(
    daemon: DaemonHandle, sink: ScriptedSmtpServer
) -> None:
    send(daemon, "later@example.org")
    wait_until(lambda: rcpt_attempts(sink, "later@example.org") >= 1, 20, "first attempt")
    wait_until(
        lambda: [r["state"] for r in queued(daemon, "later@example.org")] == ["deferred"],
        20,
        "deferred",
    )
    tried = rcpt_attempts(sink, "later@example.org")
    status, body, _ = api(daemon, "POST", f"/api/v1/queues/{quote(QUEUE, safe='')}/retry")
    assert status == 200 and body["retried"] >= 1, body
    wait_until(lambda: rcpt_attempts(sink, "later@example.org") > tried, 20, "retried")

    [rcpt] = queued(daemon, "later@example.org")
    status, body, _ = api(daemon, "DELETE", f"/api/v1/messages/{rcpt['id']}")
    assert (status, body["deleted"]) == (200, 1), body
    wait_until(lambda: not queued(daemon, "later@example.org"), 20, "gone")
    path = f"/api/v1/messages/{rcpt['id']}"
    wait_until(lambda: api(daemon, "GET", path)[0] == 404, 20, "message gone")
    assert rcpt["id"] in api(daemon, "GET", path)[1]["error"]


def test_mode_hold_release_and_sources(daemon: DaemonHandle, sink: ScriptedSmtpServer) -> None:
    send(daemon, "modes@example.org")  # so that the queue exists
    wait_until(lambda: any("modes@example.org" in m.rcpts for m in sink.messages), 20, "sent")
    queue = quote(QUEUE, safe="")
    status, body, _ = api(daemon, "POST", f"/api/v1/queues/{queue}/mode", {"mode": "backoff"})
    assert status == 200 and body["queues"] >= 1, body
    try:
        detail = get(daemon, f"/api/v1/queues/{queue}")
        assert detail["mode"] == "backoff"
        assert detail["backoff_since"] is not None  # the queue is found by its name
    finally:
        status, body, _ = api(daemon, "POST", f"/api/v1/queues/{queue}/mode", {"mode": "normal"})
        assert status == 200, body
    status, body, _ = api(daemon, "POST", f"/api/v1/queues/{queue}/release")
    assert status == 404 and "no held message" in body["error"]
    status, body, _ = api(daemon, "POST", "/api/v1/sources/192.0.2.77/disable")
    assert status == 404 and "192.0.2.77" in body["error"]


def test_errors(daemon: DaemonHandle) -> None:
    status, body, _ = api(daemon, "GET", "/api/v1/queues?max=-1")
    assert (status, body["field"]) == (400, "max")
    status, body, _ = api(daemon, "POST", "/api/v1/queues/example.org/mode", {"mode": "fast"})
    assert (status, body["field"]) == (400, "mode")
    status, body, _ = api(daemon, "GET", "/api/v1/route")
    assert (status, body["field"]) == (400, "address")
    status, body, _ = api(daemon, "GET", "/api/v1/events?types=nope")
    assert (status, body["field"]) == (400, "types")
    status, body, _ = api(daemon, "POST", "/api/v1/jobs/nojob/resume")
    assert status == 404 and "nojob" in body["error"]
    status, body, _ = api(daemon, "GET", "/api/v1/queues/nothing.example%2Fdefault")
    assert status == 404
    status, body, headers = api(daemon, "GET", "/api/v1/reload")
    assert status == 405 and headers["Allow"] == "POST"
    status, body, _ = api(daemon, "POST", "/api/v1/reload", raw=b'{"x": "' + b"a" * 8000 + b'"}')
    assert status == 413 and "larger" in body["error"]
    status, body, _ = api(daemon, "POST", "/api/v1/reload", raw=b"{nope")
    assert status == 400 and "JSON" in body["error"]


def test_cross_site_requests_are_refused(daemon: DaemonHandle) -> None:
    path = "/api/v1/jobs/csrf/pause"
    status, body, headers = api(daemon, "POST", path, headers={"Origin": "http://evil.example"})
    assert status == 403 and "cross-origin" in body["error"]
    assert "Access-Control-Allow-Origin" not in headers
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert api(daemon, "POST", path, raw=b"a=1", headers=form)[0] == 403
    rebound = {"Host": f"evil.example:{daemon.http_port}"}  # type: ignore[attr-defined]
    assert api(daemon, "GET", "/api/v1/status", headers=rebound)[0] == 403
    status, _, headers = api(daemon, "OPTIONS", path, headers={"Origin": "http://evil.example"})
    assert status == 405 and "Access-Control-Allow-Origin" not in headers
    assert "csrf" not in control(daemon, {"cmd": "status"})["status"]["paused_jobs"]  # type: ignore[index]


def test_tokens_and_roles(daemon: DaemonHandle) -> None:
    monitor = token_add(daemon, "dash", "monitor")
    admin = token_add(daemon, "ops", "admin")
    with access_config(daemon, "admin-networks = []"):
        status, body, headers = api(daemon, "GET", "/api/v1/status")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert api(daemon, "GET", "/api/v1/status", token="otk_wrong")[0] == 401
        assert get(daemon, "/api/v1/whoami", token=monitor)["role"] == "monitor"
        assert get(daemon, "/metrics", token=monitor).startswith("# HELP")
        status, body, _ = api(daemon, "POST", "/api/v1/jobs/spring/pause", token=monitor)
        assert status == 403 and "admin" in body["error"]
        assert get(daemon, "/api/v1/whoami", token=admin)["role"] == "admin"
        status, body, _ = api(daemon, "POST", "/api/v1/jobs/spring/pause", token=admin)
        assert status == 200, body
        assert api(daemon, "POST", "/api/v1/jobs/spring/resume", token=admin)[0] == 200
    with access_config(daemon, 'admin-networks = []\nmonitor-networks = ["127.0.0.0/8"]'):
        assert get(daemon, "/api/v1/whoami")["role"] == "monitor"
        assert api(daemon, "POST", "/api/v1/jobs/spring/pause")[0] == 403
    done = subprocess.run(
        [sys.executable, "-m", "outrider", "token", "del", "ops", "-c", str(daemon.config_path)],
        cwd=daemon.workdir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert api(daemon, "GET", "/api/v1/whoami", token=admin)[0] == 401  # re-read, no reload


def test_metrics_scrape(daemon: DaemonHandle, sink: ScriptedSmtpServer) -> None:
    send(daemon, "scraped@example.org")
    wait_until(lambda: any("scraped@example.org" in m.rcpts for m in sink.messages), 20, "sent")

    def scrape() -> dict[str, Any]:
        status, text, headers = api(daemon, "GET", "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(text)

    wait_until(
        lambda: value(scrape(), "outrider_delivery_latency_seconds_count") >= 1, 20, "histogram"
    )
    families = scrape()
    assert value(families, "outrider_messages_received_total") >= 1
    assert value(families, "outrider_recipients_total", result="delivered") >= 1
    assert value(families, "outrider_connections", direction="out") >= 0
    assert value(families, "outrider_spool_messages") >= 0
    assert value(families, "outrider_queue_recipients", queue="other") >= 0
    assert value(families, "outrider_uptime_seconds") > 0


def test_monitor_files(daemon: DaemonHandle) -> None:
    assert api(daemon, "GET", "/static/../pyproject.toml")[0] == 404
    assert api(daemon, "GET", "/static/%2e%2e/pyproject.toml")[0] == 404
    index = Path(__file__).parents[2] / "src/outrider/http/static/index.html"
    status, _, headers = api(daemon, "GET", "/")
    if index.exists():
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert headers["Cache-Control"] == "no-cache"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    else:
        assert status == 404
    for asset in index.parent.rglob("*.js"):
        name = asset.relative_to(index.parent).as_posix()
        status, _, headers = api(daemon, "GET", f"/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith("text/javascript"), name


def test_a_busy_http_port_fails_the_start_clearly(tmp_path: Path, dns: DnsTestServer) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        handle = write_config(
            tmp_path / "busy",
            port=free_port(),
            dns=dns.address,
            receiver_processes=1,
            extra=f'[http]\naddress = "127.0.0.1:{port}"\n',
        )
        done = subprocess.run(
            [sys.executable, "-m", "outrider", "run", "-c", str(handle.config_path)],
            cwd=handle.workdir, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"[http] address 127.0.0.1:{port}: cannot listen" in done.stderr
