"""Who the per-client limits apply to: relay-networks clients are exempt from the
connection gate's per-client count and rate and from the per-connection message and
recipient limits (``limits-exempt-relay-networks``), authenticated clients from the
per-connection ones (``limits-exempt-authenticated``); outsiders are held to all of them.
X-Job is honoured from trusted or authenticated clients only."""

from __future__ import annotations

import smtplib
import socket
from typing import cast

import pytest

from outrider.config.loader import parse_config
from outrider.inbound.limits import ConnectionGate
from outrider.intake import Intake
from outrider.policy.rate import Rate
from outrider.runtime.listeners import listener_context
from tests.support.inbound import FakeUsers, in_thread, read_all, start_server
from tests.support.throttle import SharedStandIn

TRUSTED, OUTSIDER = "127.0.0.1", "127.0.0.2"
MESSAGE = b"Subject: s\r\n\r\nbody\r\n"


def greeting(port: int, source: str) -> bytes:
    """The first reply of a connection from ``source`` (then QUIT)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        line = s.recv(512)
        if line.startswith(b"220 "):
            s.sendall(b"QUIT\r\n")
            read_all(s, quiet=0.2)  # until the server closes: the gate has released it
        return line


def send_messages(port: int, source: str, count: int, *, login: bool = False) -> list[int]:
    """``count`` messages over one connection: each MAIL's reply code (421 ends it)."""
    codes: list[int] = []
    with smtplib.SMTP("127.0.0.1", port, timeout=5, source_address=(source, 0)) as smtp:
        smtp.ehlo("client.test")
        if login:
            smtp.login("alice", "pw")
        for _ in range(count):
            code, _ = smtp.mail("a@b.test")
            codes.append(code)
            if code == 421:
                break
            smtp.rcpt("x@relay.test")
            smtp.data(MESSAGE)
    return codes


@pytest.mark.parametrize("shared", [False, True], ids=["local", "shared-throttle"])
@pytest.mark.parametrize("exempt", [True, False])
async def test_relay_networks_clients_skip_the_per_client_limits(
    exempt: bool, shared: bool
) -> None:
    throttle = SharedStandIn() if shared else None
    gate = ConnectionGate(
        max_connections=0,
        max_per_client=2,
        rate_per_client=Rate(3, 60.0),
        throttle=throttle,
    )
    server = await start_server(
        relay_networks=(f"{TRUSTED}/32",),
        gate=gate,
        limits_exempt_trusted=exempt,
        max_connection_messages=2,
    )
    try:
        trusted = [await in_thread(greeting, server.port, TRUSTED) for _ in range(8)]
        outsider = [await in_thread(greeting, server.port, OUTSIDER) for _ in range(4)]
        ok = b"220 mta.outrider.test"
        refused = b"421 4.7.0 Connection rate limit exceeded"
        assert [g.startswith(ok) for g in outsider] == [True, True, True, False]
        assert outsider[3].startswith(refused)
        if exempt:
            assert all(g.startswith(ok) for g in trusted)
            assert await in_thread(send_messages, server.port, TRUSTED, 4) == [250] * 4
        else:
            assert [g.startswith(ok) for g in trusted] == [True] * 3 + [False] * 5
    finally:
        await server.stop()


async def test_outsiders_keep_the_per_connection_message_limit() -> None:
    server = await start_server(
        relay_networks=(f"{TRUSTED}/32",), limits_exempt_trusted=True, max_connection_messages=2
    )
    try:
        assert await in_thread(send_messages, server.port, OUTSIDER, 3) == [250, 250, 421]
        assert await in_thread(send_messages, server.port, TRUSTED, 3) == [250, 250, 250]
    finally:
        await server.stop()


@pytest.mark.parametrize("lifts", [True, False])
async def test_authenticated_clients_skip_the_per_connection_limits(lifts: bool) -> None:
    server = await start_server(
        relay_networks=(f"{TRUSTED}/32",),
        auth_mechanisms=("PLAIN",),
        auth_plaintext=True,
        users=FakeUsers({"alice": "pw"}),
        max_connection_messages=2,
        auth_lifts_connection_limits=lifts,
    )
    try:
        codes = await in_thread(send_messages, server.port, OUTSIDER, 3, login=True)
        assert codes == ([250, 250, 250] if lifts else [250, 250, 421])
    finally:
        await server.stop()


async def test_x_job_is_honoured_only_from_trusted_or_authenticated_clients() -> None:
    server = await start_server(
        relay_networks=(f"{TRUSTED}/32",),
        auth_mechanisms=("PLAIN",),
        auth_plaintext=True,
        users=FakeUsers({"alice": "pw"}),
    )
    try:

        def send(source: str, job: str, login: bool = False) -> None:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=5, source_address=(source, 0)) as s:
                s.ehlo("client.test")
                if login:
                    s.login("alice", "pw")
                s.sendmail("a@b.test", ["x@relay.test"], f"X-Job: {job}\r\n".encode() + MESSAGE)

        await in_thread(send, OUTSIDER, "intruder")
        await in_thread(send, TRUSTED, "app")
        await in_thread(send, OUTSIDER, "user", True)
        assert [s.envelope.job_id for s in server.stored] == ["", "app", "user"]
        assert not any(b"X-Job" in s.data for s in server.stored)
    finally:
        await server.stop()


@pytest.mark.parametrize("value", [True, False])
def test_listener_keys_reach_the_session(value: bool) -> None:
    config = parse_config(
        f"""
        [server]
        hostname = "mx.test"
        [[listener]]
        address = "127.0.0.1:2525"
        limits-exempt-relay-networks = {str(value).lower()}
        limits-exempt-authenticated = {str(not value).lower()}
        """.replace("\n        ", "\n"),
        "t.toml",
    )
    ctx = listener_context(config.listeners[0], config, intake=cast(Intake, object()))
    assert ctx.limits_exempt_trusted is value
    assert ctx.protocol_config.auth_lifts_connection_limits is not value
