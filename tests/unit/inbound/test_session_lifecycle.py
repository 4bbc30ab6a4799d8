"""What the session hands the intake for each transaction (the MAIL parameters and the
session's facts of the moment), what each recipient asked for, and the idle clock."""

from __future__ import annotations

import asyncio
import base64
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from outrider.inbound.session import PROGRESS_BYTES, InboundSession
from outrider.intake import CONTINUE, Check, MailEnvelope, Submission, Verdict, VerdictResult
from outrider.message.envelope import Notify, Ret
from tests.support.inbound import FakeTransport, FakeUsers, in_thread, raw_dialogue, start_server


class Seen(Check):
    """Records the Submission of every MAIL and the envelope of every message."""

    def __init__(self) -> None:
        self.submissions: list[Submission] = []
        self.envelopes: list[MailEnvelope] = []
        self.rcpts: list[tuple[str, str]] = []

    def at_mail(self, submission: Submission, sender: str) -> VerdictResult:
        self.submissions.append(submission)
        return CONTINUE

    def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> VerdictResult:
        self.rcpts.append((sender, recipient))
        return CONTINUE

    def at_message(
        self, submission: Submission, envelope: MailEnvelope, content: bytes
    ) -> VerdictResult:
        self.envelopes.append(envelope)
        return CONTINUE


T = TypeVar("T")
MESSAGE = b"DATA\r\nSubject: s\r\n\r\nb\r\n.\r\n"
RCPT = b"RCPT TO:<x@relay.test>\r\n"


async def test_each_mail_carries_its_own_body_envid_and_ret() -> None:
    seen = Seen()
    server = await start_server(checks=[seen])
    try:
        out = await in_thread(
            raw_dialogue,
            server.port,
            b"EHLO c.test\r\n",
            b"MAIL FROM:<a@b.test> BODY=8BITMIME ENVID=e1 RET=HDRS\r\n" + RCPT + MESSAGE,
            b"MAIL FROM:<a@b.test> BODY=BINARYMIME\r\n" + RCPT + b"BDAT 5 LAST\r\nab\r\nc",
            b"MAIL FROM:<a@b.test> BODY=BINARYMIME\r\n" + RCPT + b"BDAT 5 LAST\r\nab\r\nc",
            b"MAIL FROM:<a@b.test> ENVID=e2 RET=FULL\r\n" + RCPT + MESSAGE,
            b"MAIL FROM:<a@b.test> ENVID=e2 RET=HDRS\r\n" + RCPT + MESSAGE,
            b"MAIL FROM:<a@b.test>\r\n" + RCPT + MESSAGE + b"QUIT\r\n",
        )
        assert out.count(b"250 2.0.0 OK queued as") == 6, out
        facts = [(s.body_8bit, s.body_binary, s.envid, s.ret) for s in seen.submissions]
        assert facts == [
            (True, False, "e1", Ret.HDRS),
            (True, True, None, None),
            (True, True, None, None),
            (False, False, "e2", Ret.FULL),
            (False, False, "e2", Ret.HDRS),
            (False, False, None, None),
        ]
        # The same facts again: the session's Submission of the previous transaction
        binary, binary_again = seen.submissions[1:3]
        assert binary_again is binary
        assert len({id(s) for s in seen.submissions}) == 5
        assert {s.helo for s in seen.submissions} == {"c.test"}
        assert {s.listener for s in seen.submissions} == {"test"}
        assert {s.client_ip for s in seen.submissions} == {"127.0.0.1"}
    finally:
        await server.stop()


async def test_a_new_helo_is_the_fact_of_the_next_transaction() -> None:
    seen = Seen()
    server = await start_server(checks=[seen])
    try:
        await in_thread(
            raw_dialogue,
            server.port,
            b"EHLO first.test\r\nMAIL FROM:<a@b.test>\r\n" + RCPT + MESSAGE,
            b"EHLO second.test\r\nMAIL FROM:<a@b.test>\r\n" + RCPT + MESSAGE,
            b"HELO third.test\r\nMAIL FROM:<a@b.test>\r\n" + RCPT + MESSAGE + b"QUIT\r\n",
        )
        assert [(s.helo, s.protocol) for s in seen.submissions] == [
            ("first.test", "ESMTP"),
            ("second.test", "ESMTP"),
            ("third.test", "SMTP"),
        ]
    finally:
        await server.stop()


async def test_auth_and_smtputf8_are_facts_of_the_next_transaction() -> None:
    seen = Seen()
    users = FakeUsers({"alice": "secret"})
    server = await start_server(
        checks=[seen], users=users, auth_mechanisms=("PLAIN",), auth_plaintext=True
    )
    plain = base64.b64encode(b"\0alice\0secret")
    try:
        out = await in_thread(
            raw_dialogue,
            server.port,
            b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n" + RCPT + MESSAGE,
            b"MAIL FROM:<a@b.test> SMTPUTF8\r\n" + RCPT + MESSAGE,
            b"AUTH PLAIN " + plain + b"\r\n",
            b"MAIL FROM:<a@b.test> SMTPUTF8\r\n" + RCPT + MESSAGE,
            b"MAIL FROM:<a@b.test>\r\n" + RCPT + MESSAGE + b"QUIT\r\n",
        )
        assert out.count(b"250 2.0.0 OK queued as") == 4, out
        facts = [(s.protocol, s.smtputf8, s.auth_user) for s in seen.submissions]
        assert facts == [
            ("ESMTP", False, None),
            ("UTF8SMTP", True, None),
            ("UTF8SMTPA", True, "alice"),
            ("ESMTPA", False, "alice"),
        ]
    finally:
        await server.stop()


async def test_a_failing_intake_is_a_local_error_and_the_session_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server()

    async def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.ctx.intake, "submit", broken)
    try:
        out = await in_thread(
            raw_dialogue,
            server.port,
            b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n" + RCPT + MESSAGE + b"NOOP\r\nQUIT\r\n",
        )
        assert out.endswith(
            b"451 4.3.0 Local error in processing; try again later\r\n"
            b"250 2.0.0 OK\r\n221 2.0.0 mta.outrider.test closing connection\r\n"
        ), out
        [record] = [r for r in caplog.records if r.exc_info]
        assert record.getMessage() == "intake failed: client=127.0.0.1 from=<a@b.test>"
    finally:
        await server.stop()


async def test_dsn_notify_and_orcpt_reach_the_message_envelope() -> None:
    seen = Seen()
    server = await start_server(checks=[seen])
    try:
        await in_thread(
            raw_dialogue,
            server.port,
            b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n"
            b"RCPT TO:<x@relay.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig@relay.test\r\n"
            b"RCPT TO:<y@relay.test>\r\n" + MESSAGE + b"QUIT\r\n",
        )
        assert seen.rcpts == [("a@b.test", "x@relay.test"), ("a@b.test", "y@relay.test")]
        [envelope] = seen.envelopes
        first, second = envelope.recipients
        assert (first.address, first.notify) == ("x@relay.test", Notify.SUCCESS | Notify.FAILURE)
        assert first.orcpt is not None and first.orcpt.endswith("orig@relay.test")
        assert (second.address, second.notify, second.orcpt) == ("y@relay.test", None, None)
    finally:
        await server.stop()


async def test_the_idle_clock_restarts_on_progress_not_on_every_byte() -> None:
    # Slowloris: a byte now and then must not keep a connection alive. Outside DATA a
    # complete line is progress; inside DATA every PROGRESS_BYTES octets.
    server = await start_server()
    session = InboundSession(server.ctx)
    session.connection_made(cast(Any, FakeTransport()))
    try:
        # a client that never speaks is idle from the moment it connected
        assert 0.0 <= session.idle_for(time.monotonic()) < 5.0
        session.last_activity = 0.0
        session.data_received(b"EHLO c.test")
        assert session.last_activity == 0.0
        session.data_received(b"\r\n")
        assert session.last_activity > 0.0

        session.data_received(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@relay.test>\r\nDATA\r\n")
        assert session.in_data()
        for _ in range(2):  # the count starts again after each restart
            session.last_activity = 0.0
            session.data_received(b"x" * (PROGRESS_BYTES - 1))
            assert session.last_activity == 0.0
            session.data_received(b"\n")
            assert session.last_activity > 0.0
    finally:
        session.connection_lost(None)
        await server.stop()


async def until(condition: Callable[[], T]) -> T:
    """``condition()`` once true (it may wait for the executor), within a second."""
    for _ in range(100):
        if value := condition():
            return value
        await asyncio.sleep(0.01)
    raise AssertionError("not within a second")


async def test_the_sweep_times_out_an_idle_session_and_spares_a_talking_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Idle past the data timeout in the middle of a big message: told so, closed, and
    # the part of the message spilled to disk is removed at once.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    server = await start_server()
    idle_transport, talking_transport = FakeTransport(), FakeTransport()
    idle, talking = InboundSession(server.ctx), InboundSession(server.ctx)
    idle.connection_made(cast(Any, idle_transport))
    talking.connection_made(cast(Any, talking_transport))
    try:
        idle.data_received(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n" + RCPT + b"DATA\r\n")
        idle.data_received(b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 3000)
        spilled = await until(
            lambda: [] if idle.busy else list(tmp_path.glob("outrider-spill-*/*"))
        )
        assert idle.in_data()
        now = time.monotonic()
        idle.last_activity = now - server.ctx.data_timeout - 1.0
        assert idle.idle_for(now) == pytest.approx(server.ctx.data_timeout + 1.0)
        talking.last_activity = now - 1.0
        assert talking.idle_for(now) == pytest.approx(1.0)
        server.listener.sweep_timeouts()
        assert idle_transport.written.endswith(
            b"421 4.4.2 mta.outrider.test Error: timeout exceeded\r\n"
        )
        assert idle_transport.closing
        assert await until(lambda: not any(p.exists() for p in spilled))
        assert not talking_transport.closing
        assert b"421" not in talking_transport.written
    finally:
        idle.connection_lost(None)
        talking.connection_lost(None)
        await server.stop()


async def test_reading_pauses_while_the_intake_stores_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pipelined input waits in the kernel, not in the session, while a message is stored.
    server = await start_server()
    stored = asyncio.Event()
    submit = server.ctx.intake.submit

    async def slow_submit(*args: Any) -> Any:
        await stored.wait()
        return await submit(*args)

    monkeypatch.setattr(server.ctx.intake, "submit", slow_submit)
    transport = FakeTransport()
    session = InboundSession(server.ctx)
    session.connection_made(cast(Any, transport))
    try:
        session.data_received(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n" + RCPT + MESSAGE)
        await asyncio.sleep(0)
        assert session.busy and not transport.reading
        stored.set()
        await until(lambda: not session.busy)
        assert transport.reading
        assert transport.written.endswith(b"250 2.0.0 OK queued as Q00001\r\n")
    finally:
        session.connection_lost(None)
        await server.stop()


async def test_the_listener_vmta_settings_are_facts_of_each_transaction() -> None:
    seen = Seen()
    server = await start_server(checks=[seen])
    ctx = replace(server.ctx, honour_vmta_header=True, listener_vmta="pool-a")
    plain = replace(server.ctx, sessions=set())
    try:
        for context in (ctx, plain):
            session = InboundSession(context)
            session.connection_made(cast(Any, FakeTransport()))
            session.data_received(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n")
            session.connection_lost(None)
        assert [(s.vmta_header, s.listener_vmta) for s in seen.submissions] == [
            (True, "pool-a"),
            (False, None),
        ]
    finally:
        await server.stop()


async def test_replies_are_not_delayed_by_nagle() -> None:
    # Each reply is one write: waiting for more to coalesce would only add latency.
    server = await start_server()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
            [session] = await until(lambda: list(server.ctx.sessions))
            assert session.transport is not None
            sock = session.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            client.close()
    finally:
        await server.stop()


async def test_the_end_of_input_closes_the_session() -> None:
    server = await start_server()
    transport = FakeTransport()
    session = InboundSession(server.ctx)
    session.connection_made(cast(Any, transport))
    try:
        session.data_received(b"EHLO c.test\r\n")
        assert not transport.closing
        assert session.eof_received() is None  # not kept half-open
        assert transport.closing
    finally:
        session.connection_lost(None)
        await server.stop()


async def test_without_a_greeting_delay_an_untrusted_client_is_greeted_at_once() -> None:
    server = await start_server(relay_networks=("10.9.9.9/32",))
    transport = FakeTransport()
    session = InboundSession(server.ctx)
    session.connection_made(cast(Any, transport))
    try:
        assert transport.written.startswith(b"220 mta.outrider.test")
        session.data_received(b"NOOP\r\n")  # talking right after it is no pregreet
        assert transport.written.endswith(b"250 2.0.0 OK\r\n")
    finally:
        session.connection_lost(None)
        await server.stop()


async def test_nothing_more_is_acted_on_once_the_client_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two pipelined messages; the client hangs up while the first is stored (which
    # completes): the second is never checked nor queued.
    seen = Seen()
    server = await start_server(checks=[seen])
    stored = asyncio.Event()
    submit = server.ctx.intake.submit

    async def slow_submit(*args: Any) -> Any:
        await stored.wait()
        return await submit(*args)

    monkeypatch.setattr(server.ctx.intake, "submit", slow_submit)
    transport = FakeTransport()
    session = InboundSession(server.ctx)
    session.connection_made(cast(Any, transport))
    transaction = b"MAIL FROM:<a@b.test>\r\n" + RCPT + MESSAGE
    try:
        session.data_received(b"EHLO c.test\r\n" + transaction + transaction)
        await asyncio.sleep(0)
        assert session.busy and len(seen.submissions) == 1
        transport.close()
        session.connection_lost(None)
        stored.set()
        await until(lambda: not session.busy)
        await asyncio.sleep(0.05)
        assert len(server.stored) == 1
        assert len(seen.submissions) == len(seen.rcpts) == len(seen.envelopes) == 1
    finally:
        await server.stop()


async def test_nothing_is_written_to_a_transport_already_closing() -> None:
    # The peer reset the connection (the transport is closing, connection_lost not yet
    # delivered) just as the session times out: no reply goes to the dead transport.
    server = await start_server()
    transport = FakeTransport()
    session = InboundSession(server.ctx)
    session.connection_made(cast(Any, transport))
    try:
        greeting = transport.written
        transport.close()
        session.timeout()
        assert transport.written == greeting
    finally:
        session.connection_lost(None)
        await server.stop()


async def test_a_client_without_a_peer_address_is_served() -> None:
    # asyncio gives no peername when the client reset before the transport was made
    server = await start_server(relay_networks=())
    transport = FakeTransport()
    transport.extra["peername"] = None
    session = InboundSession(server.ctx)
    session.connection_made(cast(Any, transport))
    try:
        assert session.client_ip == ""
        assert transport.written.startswith(b"220 mta.outrider.test")
    finally:
        session.connection_lost(None)
        await server.stop()


class Pending(Check):
    """MAIL waits (a lookup, say) until ``go``; records whether it was cancelled."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.cancelled = False

    def at_mail(self, submission: Submission, sender: str) -> VerdictResult:
        async def verdict() -> Verdict:
            try:
                await self.go.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
            return CONTINUE

        return verdict()


async def test_a_check_still_waiting_when_the_client_leaves_is_cancelled() -> None:
    pending = Pending()
    server = await start_server(checks=[pending])
    transport = FakeTransport()
    session = InboundSession(server.ctx)
    session.connection_made(cast(Any, transport))
    try:
        session.data_received(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n")
        await asyncio.sleep(0)  # the check is waiting
        transport.close()
        session.connection_lost(None)
        await until(lambda: pending.cancelled)
    finally:
        pending.go.set()
        await server.stop()
