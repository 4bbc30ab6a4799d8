"""The session's awaitable path: admission and AUTH throttling on a throttle that is not
local (a stand-in that suspends on every call, as a network one would)."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import socket
from pathlib import Path

import trustme

from outrider.auth.store import UserStore
from outrider.auth.throttle import AuthThrottle
from outrider.inbound.limits import ConnectionGate
from tests.support.daemon import wait_until
from tests.support.inbound import (
    client_tls,
    in_thread,
    raw_dialogue,
    start_server,
    tls_server_context,
)
from tests.support.throttle import SharedStandIn

CLIENT = "127.0.0.1"
PER_CLIENT = "gate test client 127.0.0.1"


class SlowStandIn(SharedStandIn):
    """Each call takes a while: long enough for a client to hang up meanwhile."""

    async def _hop(self) -> None:
        self.calls += 1
        await asyncio.sleep(0.05)


def shared_gate(stand_in: SharedStandIn, max_connections: int = 1) -> ConnectionGate:
    return ConnectionGate(
        max_connections=max_connections,
        max_per_client=0,
        rate_per_client=None,
        throttle=stand_in,
        namespace="gate test ",
    )


async def test_gate_refuses_and_releases() -> None:
    stand_in = SharedStandIn()
    server = await start_server(gate=shared_gate(stand_in))
    try:

        def dialogue() -> bytes:
            with smtplib.SMTP(CLIENT, server.port, timeout=5) as first:
                first.ehlo()
                return raw_dialogue(server.port)

        assert (await in_thread(dialogue)).startswith(b"421 4.7.0 Too many connections")
        gate = server.ctx.gate
        assert gate is not None
        # The total is the process's own (its share); per-client counts are shared.
        await in_thread(wait_until, lambda: gate.total == 0, 5.0, "released")
        assert stand_in.calls >= 2 and stand_in.state.held_now(PER_CLIENT) == 0
        assert (await in_thread(raw_dialogue, server.port)).startswith(b"220 ")
        await in_thread(wait_until, lambda: gate.total == 0, 5.0, "released")
        await in_thread(
            wait_until, lambda: stand_in.state.held_now(PER_CLIENT) == 0, 5.0, "released"
        )
    finally:
        await server.stop()


async def test_a_client_that_hangs_up_during_admission_leaves_no_count() -> None:
    stand_in = SlowStandIn()
    server = await start_server(gate=shared_gate(stand_in, max_connections=5))
    try:

        def hang_up() -> None:
            socket.create_connection((CLIENT, server.port), timeout=5).close()

        await in_thread(hang_up)
        gate = server.ctx.gate
        assert gate is not None

        def settled() -> bool:  # admitted (the client's count), then released
            return (
                stand_in.calls >= 2 and stand_in.state.held_now(PER_CLIENT) == 0 and gate.total == 0
            )

        await in_thread(wait_until, settled, 5.0, "admitted and released")
        assert (await in_thread(raw_dialogue, server.port)).startswith(b"220 ")
    finally:
        await server.stop()


async def test_implicit_tls_after_a_shared_admission(ca: trustme.CA, tmp_path: Path) -> None:
    stand_in = SharedStandIn()
    server = await start_server(
        gate=shared_gate(stand_in),
        tls=tls_server_context(ca, tmp_path / "tls"),
        implicit_tls=True,
    )
    try:

        def dialogue() -> int:
            with smtplib.SMTP_SSL(CLIENT, server.port, context=client_tls(ca), timeout=5) as s:
                return s.noop()[0]

        assert await in_thread(dialogue) == 250
        assert stand_in.calls >= 1  # admitted through the shared per-client count
    finally:
        await server.stop()


async def test_auth_failures_lock_the_client_out(tmp_path: Path) -> None:
    users = UserStore(tmp_path / "users")
    users.add("alice", "correct horse")
    stand_in = SharedStandIn()
    throttle = AuthThrottle(
        max_failures=3,
        window=60.0,
        block_time=60.0,
        first_delay=0.01,
        max_delay=0.05,
        throttle=stand_in,
        namespace="auth test ",
    )
    server = await start_server(
        auth_mechanisms=("PLAIN",),
        auth_plaintext=True,
        users=users,
        relay_networks=("10.9.9.9/32",),
        throttle=throttle,
        gate=shared_gate(SharedStandIn(), max_connections=10),
    )
    try:

        def fail(attempts: int) -> list[int]:
            with smtplib.SMTP(CLIENT, server.port, timeout=5) as smtp:
                smtp.ehlo()
                response = base64.b64encode(b"\0alice\0wrong").decode()
                return [smtp.docmd("AUTH", f"PLAIN {response}")[0] for _ in range(attempts)]

        assert await in_thread(fail, 4) == [535, 535, 535, 454]
        assert await throttle.is_blocked_async(CLIENT, server.ctx.monotonic())
        refused = await in_thread(raw_dialogue, server.port)
        assert refused.startswith(b"421 4.7.0 Too many authentication failures")
    finally:
        await server.stop()
