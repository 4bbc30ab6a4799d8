"""Listening sockets and the listener's own duties: socket options, which sessions are
idle past their timeout, reloads, implicit TLS and a graceful stop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import struct
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import trustme

from outrider.inbound.receiver import (
    LISTEN_BACKLOG,
    SWEEP_BATCH,
    Listener,
    open_listening_socket,
)
from tests.support.daemon import wait_until
from tests.support.inbound import (
    client_tls,
    in_thread,
    raw_dialogue,
    read_all,
    start_server,
    tls_server_context,
)
from tests.unit.inbound.test_sweep_batches import FakeSession


@pytest.mark.parametrize("reuse_port", [False, True])
def test_listening_socket_options(reuse_port: bool) -> None:
    sock = open_listening_socket("127.0.0.1", 0, reuse_port=reuse_port)
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)) is reuse_port
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        assert not sock.getblocking()
    finally:
        sock.close()


def test_ipv6_listening_socket_is_ipv6_only() -> None:
    try:
        sock = open_listening_socket("::1", 0, reuse_port=False)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    finally:
        sock.close()


def test_socket_that_cannot_bind_is_closed() -> None:
    taken = open_listening_socket("127.0.0.1", 0, reuse_port=False)
    try:
        before = len(os.listdir("/proc/self/fd"))
        with pytest.raises(OSError):
            open_listening_socket("127.0.0.1", taken.getsockname()[1], reuse_port=False)
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        taken.close()


def listener(**ctx: Any) -> Listener:
    fields: dict[str, Any] = {
        "sessions": set(),
        "command_timeout": 10.0,
        "data_timeout": 100.0,
        "implicit_tls": False,
        "tls": None,
        "name": "mx",
    }
    return Listener(cast(Any, SimpleNamespace(**{**fields, **ctx})), cast(Any, None))


class InData(FakeSession):
    def in_data(self) -> bool:
        return True


def test_idle_limit_is_the_data_timeout_inside_data_and_the_command_timeout_outside() -> None:
    got: list[FakeSession] = []
    sessions = {
        "command idle": FakeSession(60.0, got),
        "command at its limit": FakeSession(10.0, got),
        "data idle": InData(160.0, got),
        "data within its limit": InData(60.0, got),
        "data at its limit": InData(100.0, got),
    }
    listener(sessions=set(sessions.values())).sweep_timeouts()
    assert sorted(name for name, s in sessions.items() if s in got) == [
        "command idle",
        "data idle",
    ]


def test_busy_or_closed_sessions_are_not_timed_out() -> None:
    got: list[FakeSession] = []
    busy, closed = FakeSession(60.0, got), FakeSession(60.0, got)
    busy.busy = True
    closed.conn.closed = True
    listener(sessions={busy, closed}).sweep_timeouts()
    assert got == []


def test_reload_keeps_live_sessions_and_refuses_an_implicit_tls_change() -> None:
    lst = listener()
    live = lst.ctx.sessions
    live.add(cast(Any, object()))
    new = SimpleNamespace(sessions=set(), implicit_tls=False, tls=None, name="mx")
    lst.update(cast(Any, new))
    assert lst.ctx is cast(Any, new) and lst.ctx.sessions is live
    with pytest.raises(ValueError, match="listener mx: implicit TLS changes need a restart"):
        lst.update(cast(Any, SimpleNamespace(sessions=set(), implicit_tls=True, name="mx")))


async def test_implicit_tls_listener_greets_over_tls_and_follows_reloads(tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    server = await start_server(tls=tls_server_context(old_ca, tmp_path / "old"), implicit_tls=True)

    def greeting(ca: trustme.CA) -> bytes:
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
            client_tls(ca).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            return tls.recv(512)

    try:
        assert (await in_thread(greeting, old_ca)).startswith(b"220 ")
        renewed = tls_server_context(new_ca, tmp_path / "new", min_version="TLSv1.3")
        server.listener.update(replace(server.ctx, tls=renewed))
        assert (await in_thread(greeting, new_ca)).startswith(b"220 ")
        assert server.listener._server_tls is not None
        assert server.listener._server_tls.minimum_version is ssl.TLSVersion.TLSv1_3
    finally:
        await server.stop()


async def test_stop_says_goodbye_to_idle_clients_and_stops_listening() -> None:
    server = await start_server()

    def idle_client() -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            greeting = sock.recv(512)
            assert greeting.startswith(b"220 ")
            return read_all(sock, quiet=3.0)

    task = asyncio.ensure_future(in_thread(idle_client))
    await in_thread(wait_until, lambda: bool(server.ctx.sessions), 5.0, "connected")
    await asyncio.sleep(0.05)  # greeted
    await server.stop()
    assert (await task).startswith(b"421 4.3.2 ")
    assert server.ctx.sessions == set()
    with pytest.raises(OSError):
        raw_dialogue(server.port, timeout=1.0)


def test_empty_host_listens_on_every_address() -> None:
    sock = open_listening_socket("", 0, reuse_port=False)
    try:
        assert sock.getsockname()[0] in ("0.0.0.0", "::")
    finally:
        sock.close()


class Clocked(FakeSession):
    """Idle since ``last`` on the monotonic clock, as a real session measures it."""

    def __init__(self, last: float, timed_out: list[FakeSession]) -> None:
        super().__init__(0.0, timed_out)
        self.last = last

    def idle_for(self, now: float) -> float:
        return now - self.last


async def test_idleness_is_measured_on_the_monotonic_clock() -> None:
    got: list[FakeSession] = []
    now = time.monotonic()
    stale, fresh = Clocked(now - 60.0, got), Clocked(now, got)
    many = [Clocked(now - 60.0, got) for _ in range(SWEEP_BATCH)]
    listener(sessions={stale, fresh, *many}).sweep_timeouts()
    await asyncio.sleep(0)  # the second batch
    assert stale in got and fresh not in got and len(got) == SWEEP_BATCH + 1


async def test_starttls_listener_greets_in_clear_and_reloads_its_certificate(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    server = await start_server(tls=tls_server_context(ca, tmp_path / "old"), starttls=True)
    try:
        assert (await in_thread(raw_dialogue, server.port)).startswith(b"220 ")
        server.listener.update(replace(server.ctx, tls=tls_server_context(ca, tmp_path / "new")))
        assert (await in_thread(raw_dialogue, server.port)).startswith(b"220 ")
    finally:
        await server.stop()


async def test_stop_aborts_a_transaction_that_outlasts_the_grace_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="outrider.inbound")
    server = await start_server()

    def stuck_in_data() -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.recv(512)
            sock.sendall(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@relay.test>\r\n")
            sock.sendall(b"DATA\r\nSubject: never ends\r\n")
            return read_all(sock, quiet=3.0)

    task = asyncio.ensure_future(in_thread(stuck_in_data))
    await in_thread(wait_until, lambda: any(s.in_data() for s in server.ctx.sessions), 5.0, "DATA")
    started = time.monotonic()
    await server.listener.stop(0.2)
    assert time.monotonic() - started < 2.0
    assert server.ctx.sessions == set()
    await task
    assert caplog.messages == ["shutdown: aborting session from 127.0.0.1"]


async def test_start_logs_the_listener_name(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="outrider.inbound")
    server = await start_server()
    try:
        assert "listening on test" in caplog.messages
    finally:
        await server.stop()


async def test_implicit_tls_client_silent_past_the_handshake_timeout_is_dropped(
    tmp_path: Path,
) -> None:
    server = await start_server(tls=tls_server_context(trustme.CA(), tmp_path), implicit_tls=True)
    ctx = replace(server.ctx, tls_handshake_timeout=0.3, sessions=set())
    quick = Listener(ctx, open_listening_socket("127.0.0.1", 0, reuse_port=False))
    await quick.start()

    def silent() -> float:
        started = time.monotonic()
        with socket.create_connection(quick.sock.getsockname(), timeout=5) as sock:
            assert read_all(sock, quiet=4.0) == b""  # closed, or quiet for 4 s
        return time.monotonic() - started

    try:
        assert await in_thread(silent) < 2.0
    finally:
        await quick.stop(1.0)
        await server.stop()


SOMAXCONN = int(Path("/proc/sys/net/core/somaxconn").read_text())  # the kernel's cap


def listen_backlog(sock: socket.socket) -> int:
    """The accept queue's length on Linux: ``tcpi_sacked`` of a listening socket's TCP_INFO."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("<I", info, 28)[0])


@pytest.mark.parametrize("implicit_tls", [False, True])
async def test_a_started_listener_keeps_the_large_backlog_for_bursts(
    implicit_tls: bool, tmp_path: Path
) -> None:
    # The event loop listens on the socket again when it serves it; its default backlog
    # (100) would drop a burst of connections that LISTEN_BACKLOG absorbs.
    limit = min(LISTEN_BACKLOG, SOMAXCONN)
    tls = tls_server_context(trustme.CA(), tmp_path) if implicit_tls else None
    server = await start_server(tls=tls, implicit_tls=implicit_tls)
    try:
        assert limit > 100
        assert listen_backlog(server.listener.sock) == limit
    finally:
        await server.stop()
