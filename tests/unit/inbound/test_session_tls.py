"""STARTTLS and implicit TLS in one session, driven by hand: the handshake's outcome
(upgraded, failed, or a client already gone), what the session logs about it, and the
bytes a client sends while a shared throttle decides on admission.

A fake transport stands in for the socket and ``loop.start_tls`` is replaced, so each
outcome of a handshake can be chosen; the real thing is in
tests/integration/test_tls_inbound.py.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from outrider.inbound.limits import ConnectionGate
from outrider.inbound.session import InboundSession
from outrider.intake import CONTINUE, Check, Submission, VerdictResult
from tests.support.inbound import FakeTransport, InboundServer, start_server
from tests.support.throttle import SharedStandIn

LOGGER = "outrider.inbound"


class FakeSSLObject:
    def version(self) -> str:
        return "TLSv1.3"


def tls_transport(**extra: object) -> FakeTransport:
    return FakeTransport(**{"ssl_object": FakeSSLObject(), **extra})


CIPHER = ("TLS_AES_256_GCM_SHA384", "TLSv1.3", 256)


class FakeStartTls:
    """``loop.start_tls``: records each call, then returns ``result`` or raises it."""

    def __init__(self, result: FakeTransport | BaseException, before: Any = None) -> None:
        self.result = result
        self.before = before  # called first: what happens while the handshake runs
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    async def __call__(self, *args: Any, **kwargs: Any) -> FakeTransport:
        self.calls.append((args, kwargs))
        if self.before is not None:
            self.before()
        await asyncio.sleep(0)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def use_start_tls(monkeypatch: pytest.MonkeyPatch, fake: FakeStartTls) -> None:
    monkeypatch.setattr(asyncio.get_running_loop(), "start_tls", fake)


def gate() -> ConnectionGate:
    return ConnectionGate(max_connections=10, max_per_client=0, rate_per_client=None)


@pytest.fixture
async def server() -> AsyncIterator[InboundServer]:
    # STARTTLS offered; the handshake itself is the fake's, so no certificate is needed
    server = await start_server(
        tls=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), starttls=True, gate=gate()
    )
    yield server
    await server.stop()


def connect(server: InboundServer, transport: FakeTransport) -> InboundSession:
    session = InboundSession(server.ctx)
    session.connection_made(cast(Any, transport))
    return session


async def settle(session: InboundSession) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
        if not session.busy:
            return
    raise AssertionError("the session's task did not end")


async def starttls(session: InboundSession, plain: FakeTransport) -> None:
    session.data_received(b"EHLO c.test\r\nSTARTTLS\r\n")
    assert plain.written.endswith(b"220 2.0.0 Ready to start TLS\r\n")
    await settle(session)


# -- STARTTLS -------------------------------------------------------------------------


async def test_starttls_upgrades_the_session(
    server: InboundServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    plain, tls = FakeTransport(), tls_transport(cipher=CIPHER)
    session = connect(server, plain)

    def slow_handshake() -> None:  # the handshake took its time: the idle clock restarts
        session.last_activity = 0.0

    fake = FakeStartTls(tls, before=slow_handshake)
    use_start_tls(monkeypatch, fake)
    await starttls(session, plain)
    try:
        [(args, kwargs)] = fake.calls
        assert args[:3] == (plain, session, server.ctx.tls)
        assert kwargs == {"server_side": True, "ssl_handshake_timeout": 5.0}
        assert session.last_activity > 0.0
        assert tls.reading
        assert "TLS established: client=127.0.0.1 TLSv1.3 TLS_AES_256_GCM_SHA384" in caplog.text

        # The session now speaks on the TLS transport, as a secure one.
        session.data_received(b"EHLO c.test\r\n")
        assert tls.written.startswith(b"250-mta.outrider.test")
        assert b"STARTTLS" not in tls.written
        session.data_received(b"STARTTLS\r\n")
        assert tls.written.endswith(b"503 5.5.1 TLS already active\r\n")
        assert plain.written.endswith(b"220 2.0.0 Ready to start TLS\r\n")  # none in clear
    finally:
        session.connection_lost(None)


async def test_tls_details_unknown_are_logged_as_such(
    server: InboundServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    plain = FakeTransport()
    session = connect(server, plain)
    use_start_tls(monkeypatch, FakeStartTls(FakeTransport()))  # no ssl_object, no cipher
    await starttls(session, plain)
    try:
        assert "TLS established: client=127.0.0.1 ? ?" in caplog.text
    finally:
        session.connection_lost(None)


async def test_tls_details_are_not_logged_above_debug(
    server: InboundServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    plain = FakeTransport()
    session = connect(server, plain)
    use_start_tls(monkeypatch, FakeStartTls(tls_transport(cipher=CIPHER)))
    await starttls(session, plain)
    try:
        assert "TLS established" not in caplog.text
    finally:
        session.connection_lost(None)


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (ssl.SSLError(1, "wrong version number"), "wrong version number"),
        (TimeoutError(), "TimeoutError"),  # no message of its own: its name
        (ConnectionResetError(104, "Connection reset by peer"), "Connection reset by peer"),
    ],
    ids=["ssl", "timeout", "reset"],
)
async def test_a_failed_handshake_ends_the_session(
    server: InboundServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: BaseException,
    said: str,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    plain = FakeTransport()
    session = connect(server, plain)
    assert server.ctx.gate is not None and server.ctx.gate.total == 1
    use_start_tls(monkeypatch, FakeStartTls(error))
    await starttls(session, plain)
    assert plain.aborted
    assert session not in server.ctx.sessions
    assert server.ctx.gate.total == 0  # the connection's count is given back
    await asyncio.wait_for(session.wait_closed(), 1.0)
    [record] = [r for r in caplog.records if "TLS handshake failed" in r.getMessage()]
    assert record.getMessage().startswith("TLS handshake failed: client=127.0.0.1: ")
    assert record.getMessage().endswith(said)


async def test_no_handshake_for_a_client_gone_after_starttls(
    server: InboundServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = FakeTransport()
    session = connect(server, plain)
    fake = FakeStartTls(tls_transport())
    use_start_tls(monkeypatch, fake)
    session.data_received(b"EHLO c.test\r\nSTARTTLS\r\n")
    plain.close()  # the client hung up after the 220, before the handshake began
    await settle(session)
    assert fake.calls == []
    session.connection_lost(None)


class Seen(Check):
    def __init__(self) -> None:
        self.submissions: list[Submission] = []

    def at_mail(self, submission: Submission, sender: str) -> VerdictResult:
        self.submissions.append(submission)
        return CONTINUE


async def test_a_transaction_after_starttls_is_recorded_as_over_tls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = Seen()
    server = await start_server(
        tls=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), starttls=True, checks=[seen]
    )
    plain, tls = FakeTransport(), tls_transport()
    session = connect(server, plain)
    use_start_tls(monkeypatch, FakeStartTls(tls))
    transaction = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@relay.test>\r\nRSET\r\n"
    try:
        session.data_received(b"EHLO c.test\r\n" + transaction)
        await starttls(session, plain)
        session.data_received(b"EHLO c.test\r\n" + transaction)
        assert [s.protocol for s in seen.submissions] == ["ESMTP", "ESMTPS"]
        assert tls.written.endswith(b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.0.0 OK\r\n")
    finally:
        session.connection_lost(None)
        await server.stop()


# -- implicit TLS ---------------------------------------------------------------------


async def test_implicit_tls_greets_and_logs_the_tls_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    server = await start_server(tls=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), implicit_tls=True)
    tls = tls_transport(cipher=CIPHER)
    session = connect(server, tls)
    try:
        assert tls.written.startswith(b"220 mta.outrider.test")
        assert "TLS established: client=127.0.0.1 TLSv1.3 TLS_AES_256_GCM_SHA384" in caplog.text
    finally:
        session.connection_lost(None)
        await server.stop()


# -- words sent while a shared throttle decides on admission ---------------------------


def shared_gate(max_connections: int = 10) -> ConnectionGate:
    return ConnectionGate(
        max_connections=max_connections,
        max_per_client=0,
        rate_per_client=None,
        throttle=SharedStandIn(),
        namespace="test ",
    )


async def test_early_words_are_answered_after_the_greeting_in_order() -> None:
    server = await start_server(gate=shared_gate())
    transport = FakeTransport()
    session = connect(server, transport)
    try:
        assert session.busy and not transport.reading  # admission in progress
        session.data_received(b"EHLO c.test\r\n")
        session.data_received(b"NOOP\r\n")
        assert transport.written == b""
        await settle(session)
        lines = transport.written.split(b"\r\n")
        assert lines[0].startswith(b"220 mta.outrider.test")
        assert lines[1].startswith(b"250-mta.outrider.test")
        assert transport.written.endswith(b"250 2.0.0 OK\r\n")
        assert transport.reading
        session.data_received(b"QUIT\r\n")
        assert transport.written.endswith(b" closing connection\r\n") and transport.closing
    finally:
        session.connection_lost(None)
        await server.stop()


async def test_an_early_hang_up_is_seen_after_the_greeting() -> None:
    server = await start_server(gate=shared_gate())
    transport = FakeTransport()
    session = connect(server, transport)
    try:
        session.data_received(b"NOOP\r\n")
        assert session.eof_received() is None
        await settle(session)
        assert transport.written.startswith(b"220 ")
        assert transport.written.endswith(b"250 2.0.0 OK\r\n")
        assert transport.closing  # the end of input closed the session after the NOOP
    finally:
        session.connection_lost(None)
        await server.stop()


async def test_early_words_of_a_refused_client_are_not_answered() -> None:
    server = await start_server(gate=shared_gate(max_connections=1))
    first = connect(server, FakeTransport())
    await settle(first)  # admitted: the listener is full
    transport = FakeTransport()
    session = connect(server, transport)
    try:
        session.data_received(b"EHLO c.test\r\nNOOP\r\n")
        await settle(session)
        assert transport.written.startswith(b"421 4.7.0 Too many connections")
        assert transport.written.count(b"\r\n") == 1
        assert transport.closing
    finally:
        session.connection_lost(None)
        first.connection_lost(None)
        await server.stop()


async def test_early_words_meet_the_pregreet_hold() -> None:
    server = await start_server(
        gate=shared_gate(), greeting_delay=0.05, relay_networks=("10.9.9.9/32",)
    )
    transport = FakeTransport()
    session = connect(server, transport)
    try:
        session.data_received(b"EHLO c.test\r\n")
        await settle(session)
        assert transport.written == b""  # the greeting is held
        await asyncio.sleep(0.1)
        assert transport.written.startswith(b"554 5.5.0")
        assert transport.closing
    finally:
        session.connection_lost(None)
        await server.stop()


async def test_a_client_gone_during_admission_gets_nothing() -> None:
    server = await start_server(gate=shared_gate())
    transport = FakeTransport()
    session = connect(server, transport)
    task = session.task
    assert task is not None
    session.data_received(b"EHLO c.test\r\n")
    transport.close()
    session.connection_lost(None)
    await task  # the admission ends (it is not cancelled) ...
    assert transport.written == b""  # ... and says nothing
    gate = server.ctx.gate
    assert gate is not None
    for _ in range(20):  # a count taken for the gone client is given back
        await asyncio.sleep(0)
    assert gate.total == 0
    await server.stop()


async def test_an_exempt_trusted_client_is_admitted_at_once() -> None:
    # limits-exempt-relay-networks: the shared per-client count does not apply, so a
    # trusted client is greeted without waiting for the shared throttle.
    gate = shared_gate()
    server = await start_server(gate=gate, limits_exempt_trusted=True)
    transport = FakeTransport()
    session = connect(server, transport)
    try:
        assert transport.written.startswith(b"220 mta.outrider.test")
        assert not session.busy and transport.reading
        assert isinstance(gate.throttle, SharedStandIn) and gate.throttle.calls == 0
    finally:
        session.connection_lost(None)
        await server.stop()
