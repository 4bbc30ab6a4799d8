"""Fixtures for end-to-end tests: a loopback DNS server, loopback SMTP sinks, the daemon.

Everything listens on 127.0.0.0/8; the daemon's [dns] points at the loopback DNS
server, so no test can reach the system resolver or a real MX.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.daemon import DaemonHandle, free_port, write_config
from tests.support.dns_server import DnsTestServer
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript
from tests.support.tls import write_ca

SINK_HOSTS = ("127.0.0.2", "127.0.0.3")


def common_free_port(hosts: tuple[str, ...]) -> int:
    """A port free on every host, so several MX hosts can share one smtp-port."""
    for _ in range(50):
        port = free_port(hosts[0])
        ok = True
        for host in hosts[1:]:
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no common free port")


@pytest.fixture
def mx_port() -> int:
    return common_free_port(SINK_HOSTS)


@pytest.fixture
def dns_server() -> Iterator[DnsTestServer]:
    server = DnsTestServer(
        {
            "example.org": {"MX": [(10, "mx1.example.org")]},
            "mx1.example.org": {"A": ["127.0.0.2"]},
            "sender.test": {"MX": [(10, "mx1.example.org")]},
            "twomx.test": {"MX": [(10, "mx-dead.twomx.test"), (20, "mx-live.twomx.test")]},
            "mx-dead.twomx.test": {"A": ["127.0.0.3"]},
            "mx-live.twomx.test": {"A": ["127.0.0.2"]},
            "nullmx.test": {"MX": [(0, ".")]},
            "implicit.test": {"A": ["127.0.0.2"]},
            # a domain whose only MX is the second sink (127.0.0.3), see ``sink2``
            "second.test": {"MX": [(10, "mx.second.test")]},
            "mx.second.test": {"A": ["127.0.0.3"]},
            # two domains hosted at one provider: mx-rollup gives them one queue
            "rollup-a.test": {"MX": [(10, "mx.provider.test")]},
            "rollup-b.test": {"MX": [(10, "mx.provider.test")]},
            "mx.provider.test": {"A": ["127.0.0.2"]},
            "fast.test": {"MX": [(10, "mx.second.test")]},
            # first MX is the second sink, the backup is the first sink
            "two-live.test": {"MX": [(10, "mx.second.test"), (20, "mx1.example.org")]},
        },
        zones=["org", "test"],
    )
    server.start_in_thread()
    yield server
    server.stop()


@pytest.fixture
def sink(mx_port: int) -> Iterator[ScriptedSmtpServer]:
    server = ScriptedSmtpServer(ServerScript(), host="127.0.0.2", port=mx_port)
    with server.run_in_thread() as running:
        yield running


@pytest.fixture
def make_daemon(
    tmp_path: Path, dns_server: DnsTestServer, mx_port: int
) -> Iterator[Callable[..., DaemonHandle]]:
    handles: list[DaemonHandle] = []

    def factory(**kwargs: object) -> DaemonHandle:
        domain_defaults = str(kwargs.pop("domain_defaults", ""))
        handle = write_config(
            tmp_path / f"d{len(handles)}",
            port=free_port(),
            dns=dns_server.address,
            domain_defaults=f"smtp-port = {mx_port}\n{domain_defaults}",
            **kwargs,  # type: ignore[arg-type]
        )
        handles.append(handle)
        return handle

    yield factory
    for handle in handles:
        handle.kill()


@pytest.fixture
def sink2(mx_port: int) -> Iterator[ScriptedSmtpServer]:
    """A second sink, the MX of ``second.test`` (127.0.0.3 at the same port as ``sink``)."""
    server = ScriptedSmtpServer(ServerScript(), host="127.0.0.3", port=mx_port)
    with server.run_in_thread() as running:
        yield running


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The test certificate authority (trustme) shared by the TLS tests."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    return write_ca(ca, tmp_path / "ca.pem")


@pytest.fixture
def unknown_ca_file(tmp_path: Path) -> Path:
    """A CA that signed nothing the tests serve: verification against it fails."""
    return write_ca(trustme.CA(), tmp_path / "other-ca.pem")
