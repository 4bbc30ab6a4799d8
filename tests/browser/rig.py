"""A real daemon with its HTTP listener, a loopback DNS server and a loopback SMTP sink:
what the browser test and the screenshot script drive the monitor against."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.support.daemon import DaemonHandle, free_port, wait_until, write_config
from tests.support.dns_server import DnsTestServer
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

SINK_HOST = "127.0.0.2"
SHOP = "shop.test"  # routed to the sink
EVIL = "evil.test"  # routed to the sink too; its replies there carry markup (see the tests)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Rig:
    daemon: DaemonHandle
    sink: ScriptedSmtpServer
    dns: DnsTestServer
    base: str  # http://127.0.0.1:PORT
    token: str = ""  # sent as a bearer token by ``api`` when set

    def add_token(self, name: str, role: str) -> str:
        """``outrider token add NAME --role ROLE``: the new token, from its last line."""
        made = subprocess.run(
            [sys.executable, "-m", "outrider", "token", "add", name, "--role", role,
             "-c", str(self.daemon.config_path)],
            cwd=self.daemon.workdir, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return made.stdout.strip().splitlines()[-1]

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call as an admin on loopback; errors raise with the server's message."""
        data = None if method == "GET" else json.dumps(body or {}).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={
                **({"Content-Type": "application/json"} if data is not None else {}),
                **({"Authorization": f"Bearer {self.token}"} if self.token else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:300]!r}") from None

    def queues(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/api/v1/queues")["queues"])

    def queue_row(self, domain: str) -> dict[str, Any] | None:
        found = [q for q in self.queues() if q["domain"] == domain]
        return found[0] if found else None

    def pause(self, queue: str) -> None:
        self.api("POST", f"/api/v1/queues/{quote(queue, safe='')}/pause")

    def send(
        self,
        rcpts: list[str],
        *,
        count: int = 1,
        headers: bytes = b"",
        sender: str = "news@sender.test",
    ) -> None:
        with smtplib.SMTP(self.daemon.host, self.daemon.port, timeout=30) as s:
            for i in range(count):
                s.sendmail(
                    sender,
                    rcpts,
                    headers + f"Subject: monitor {i}\r\n\r\nhello\r\n".encode(),
                )


def rig_config(
    sink_port: int,
    http_port: int,
    domains: tuple[str, ...],
    settings: Mapping[str, str],
    http: str = "",
) -> str:
    """The [http] table (plus ``http``) and one routed domain table per domain (plus its
    ``settings``)."""
    routes = "".join(
        f'[domain."{d}"]\nroute = "{SINK_HOST}:{sink_port}"\n{settings.get(d, "")}\n'
        for d in domains
    )
    return f'[http]\naddress = "127.0.0.1:{http_port}"\n{http}\n\n{routes}'


@contextmanager
def running_rig(
    workdir: Path,
    *,
    domains: tuple[str, ...] = (SHOP,),
    settings: Mapping[str, str] | None = None,
    extra: str = "",
    http: str = "",
) -> Iterator[Rig]:
    """Start everything (the daemon with the shipped defaults: uvloop, one receiver
    process) and stop it again, the daemon by its own PID."""
    with ExitStack() as stack:
        dns = DnsTestServer({SHOP: {"A": [SINK_HOST]}}, zones=["test"])
        dns.start_in_thread()
        stack.callback(dns.stop)
        sink = stack.enter_context(
            ScriptedSmtpServer(
                ServerScript(), host=SINK_HOST, port=free_port(SINK_HOST)
            ).run_in_thread()
        )
        http_port = free_port()
        daemon = write_config(
            workdir,
            port=free_port(),
            dns=dns.address,
            relay_domains=domains,
            receiver_processes=1,
            extra=rig_config(sink.port, http_port, domains, settings or {}, http) + extra,
        )
        daemon.start()
        stack.callback(daemon.kill)
        stack.callback(daemon.stop)
        rig = Rig(daemon, sink, dns, f"http://127.0.0.1:{http_port}")
        wait_until(lambda: _answers(rig), 20, "the HTTP listener answers")  # 401 is an answer
        yield rig


def _answers(rig: Rig) -> bool:
    try:
        with urllib.request.urlopen(rig.base + "/", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False
