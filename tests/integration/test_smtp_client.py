"""The asyncio SMTP client driver against the scripted SMTP server on loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import trustme

from outrider.delivery.smtp_client import (
    SmtpConnectError,
    SmtpSession,
    SmtpTimeouts,
    TransactionResult,
)
from outrider.message.envelope import Envelope, Notify, Recipient
from outrider.smtp.replies import Reply
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

FAST = SmtpTimeouts(
    connect=2, greeting=2, ehlo=2, mail=2, rcpt=2, data_init=2, data_block=2, data_done=2,
    rset=2, quit=1, starttls=2,
)  # fmt: skip
BODY = b"Subject: test\r\n\r\n.leading dot\r\nhello\r\n"


def envelope(**kw: object) -> Envelope:
    return Envelope("Q1", "sender@a.test", [], time.time(), **kw)  # type: ignore[arg-type]


def rcpts(*addresses: str) -> list[Recipient]:
    return [Recipient(a) for a in addresses]


def codes(result: TransactionResult) -> list[str]:
    return [str(r.reply) for r in result.results]


async def connect(server: ScriptedSmtpServer, **kw: object) -> SmtpSession:
    options: dict[str, object] = {"helo_name": "client.test", "timeouts": FAST}
    options.update(kw)
    return await SmtpSession.connect(server.host, server.port, **options)  # type: ignore[arg-type]


@pytest.fixture
async def sink() -> AsyncIterator[ScriptedSmtpServer]:
    async with ScriptedSmtpServer() as server:
        yield server


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx.test").configure_cert(ctx)
    return ctx


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def test_delivers_to_sink(sink: ScriptedSmtpServer) -> None:
    session = await connect(sink)
    assert session.usable and session.extensions.pipelining and session.tls_version is None
    assert session.peer_address == "127.0.0.1" and session.local_address == "127.0.0.1"
    result = await session.send(envelope(), rcpts("a@x.test", "b@x.test"), BODY)
    await session.close()
    assert codes(result) == ["250 2.0.0 OK queued"] * 2 and not result.connection_lost
    [message] = await sink.wait_for_messages(1)
    assert message.rcpts == ("a@x.test", "b@x.test") and message.data == BODY
    assert message.mail_from == "sender@a.test" and message.helo == "client.test"
    assert message.mail_params == {"SIZE": str(len(BODY))} and message.bdat
    assert sink.sessions[0].commands[-1] == "QUIT"


@pytest.mark.parametrize("omit", [frozenset(), frozenset({"CHUNKING", "PIPELINING"})])
async def test_connection_reuse_with_rset(omit: frozenset[str]) -> None:
    async with ScriptedSmtpServer(ServerScript(omit_extensions=omit)) as server:
        session = await connect(server)
        for i in range(3):
            body = b"Subject: %d\r\n\r\n.\r\n..x\r\n" % i
            result = await session.send(envelope(), rcpts(f"r{i}@x.test"), body)
            assert codes(result) == [str(Reply(250, "2.0.0", "OK queued"))]
            assert session.usable
        assert session.transactions == 3
        await session.close()
        messages = await server.wait_for_messages(3)
        assert server.connections == 1
        assert [m.data for m in messages] == [
            b"Subject: %d\r\n\r\n.\r\n..x\r\n" % i for i in range(3)
        ]
        assert all(m.bdat == (not omit) for m in messages)
        verbs = [c.split()[0] for c in server.sessions[0].commands]
        assert verbs.count("RSET") == 2
        assert verbs[verbs.index("RSET") + 1] == "MAIL"


async def test_one_of_three_recipients_rejected() -> None:
    script = ServerScript(rcpt_replies={"bad@x.test": "550 5.1.1 no such user"})
    async with ScriptedSmtpServer(script) as server:
        session = await connect(server)
        result = await session.send(envelope(), rcpts("a@x.test", "bad@x.test", "c@x.test"), BODY)
        await session.close()
        assert [(r.recipient.address, r.reply.code) for r in result.results] == [
            ("a@x.test", 250),
            ("bad@x.test", 550),
            ("c@x.test", 250),
        ]
        assert result.results[1].reply == Reply(550, "5.1.1", "no such user")
        [message] = await server.wait_for_messages(1)
        assert message.rcpts == ("a@x.test", "c@x.test")


async def test_dsn_and_8bitmime_params_reach_the_server(sink: ScriptedSmtpServer) -> None:
    session = await connect(sink)
    recipient = Recipient("a@x.test", orcpt="rfc822;a+b@x.test", notify=Notify.FAILURE)
    await session.send(envelope(body_8bit=True, envid="e 1"), [recipient], "é\r\n".encode())
    await session.close()
    [message] = await sink.wait_for_messages(1)
    assert message.mail_params["BODY"] == "8BITMIME" and message.mail_params["ENVID"] == "e+201"
    assert message.rcpt_params == ({"NOTIFY": "FAILURE", "ORCPT": "rfc822;a+2Bb@x.test"},)


async def test_smtputf8_refused_locally_when_not_offered() -> None:
    async with ScriptedSmtpServer(ServerScript(omit_extensions=frozenset({"SMTPUTF8"}))) as server:
        session = await connect(server)
        result = await session.send(envelope(smtputf8=True), rcpts("a@x.test"), BODY)
        assert session.usable
        await session.close()
        assert result.results[0].reply == Reply(
            550, "5.6.7", "Remote server does not support SMTPUTF8"
        )
        assert not any(c.startswith("MAIL") for c in server.sessions[0].commands)


async def test_helo_fallback() -> None:
    async with ScriptedSmtpServer(ServerScript(ehlo_reply="500 5.5.1 EHLO unknown")) as server:
        session = await connect(server)
        assert not session.extensions.pipelining
        result = await session.send(envelope(), rcpts("a@x.test"), BODY)
        await session.close()
        assert result.results[0].reply.code == 250
        [message] = await server.wait_for_messages(1)
        assert not message.esmtp and message.data == BODY and message.mail_params == {}


@pytest.mark.parametrize("greeting", ["421 4.3.2 too busy", "554 5.7.1 go away"])
async def test_refused_greeting_raises(greeting: str) -> None:
    async with ScriptedSmtpServer(ServerScript(greeting=greeting)) as server:
        with pytest.raises(SmtpConnectError) as info:
            await connect(server)
        assert info.value.reply is not None and str(info.value.reply) == greeting
        assert info.value.address == "127.0.0.1" and not info.value.tls_failure
        if greeting.startswith("554"):
            assert server.sessions[0].commands == ["QUIT"]


async def test_connect_refused_and_greeting_timeout() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SmtpConnectError, match="cannot connect"):
        await SmtpSession.connect("127.0.0.1", port, helo_name="c.test", timeouts=FAST)
    fast = SmtpTimeouts(greeting=0.2, quit=0.2)
    async with ScriptedSmtpServer(ServerScript(hang_at="greeting")) as server:
        started = time.monotonic()
        with pytest.raises(SmtpConnectError, match="greeting"):
            await connect(server, timeouts=fast)
        assert time.monotonic() - started < 2


@pytest.mark.parametrize("omit", [frozenset(), frozenset({"CHUNKING"})])
async def test_drop_mid_data_gives_451_for_all(omit: frozenset[str]) -> None:
    big = b"Subject: big\r\n\r\n" + b"x" * 500_000 + b"\r\n"
    async with ScriptedSmtpServer(ServerScript(drop_at="body", omit_extensions=omit)) as server:
        session = await connect(server)
        result = await session.send(envelope(), rcpts("a@x.test", "b@x.test"), big)
        assert result.connection_lost and not session.usable
        assert all(r.reply.code == 451 and r.reply.enhanced == "4.4.2" for r in result.results)
        assert all(r.reply.text.startswith("Connection lost") for r in result.results)
        again = await session.send(envelope(), rcpts("a@x.test"), BODY)
        assert again.connection_lost and again.results[0].reply.code == 451
        await session.close()
        assert server.messages == []


async def test_hang_at_rcpt_times_out() -> None:
    timeouts = SmtpTimeouts(rcpt=0.3, quit=0.3)
    async with ScriptedSmtpServer(ServerScript(hang_at="rcpt")) as server:
        session = await connect(server, timeouts=timeouts)
        started = time.monotonic()
        result = await session.send(envelope(), rcpts("a@x.test", "b@x.test"), BODY)
        elapsed = time.monotonic() - started
        assert 0.25 < elapsed < 1.5
        assert codes(result) == ["451 4.4.2 Timeout waiting for RCPT TO reply"] * 2
        assert result.connection_lost and not session.usable
        await session.close()


async def test_hang_after_data_and_at_quit_are_bounded() -> None:
    timeouts = SmtpTimeouts(data_done=0.3, quit=0.3)
    async with ScriptedSmtpServer(ServerScript(hang_at="data_done")) as server:
        session = await connect(server, timeouts=timeouts)
        result = await session.send(envelope(), rcpts("a@x.test"), BODY)
        assert codes(result) == ["451 4.4.2 Timeout waiting for end of data reply"]
        await session.close()
    async with ScriptedSmtpServer(ServerScript(hang_at="quit")) as server:
        session = await connect(server, timeouts=timeouts)
        started = time.monotonic()
        await session.close()
        assert time.monotonic() - started < 1.5 and not session.usable


async def test_stalled_reader_times_out_while_sending_data() -> None:
    huge = b"x" * (24 * 1024 * 1024)  # more than the socket buffers can absorb
    timeouts = SmtpTimeouts(data_block=0.3, data_done=30, quit=0.3)
    async with ScriptedSmtpServer(ServerScript(hang_at="body")) as server:
        session = await connect(server, timeouts=timeouts)
        started = time.monotonic()
        result = await session.send(envelope(), rcpts("a@x.test"), huge)
        assert time.monotonic() - started < 5
        assert codes(result) == ["451 4.4.2 Timeout sending message data"]
        await session.close()


async def test_421_mid_transaction() -> None:
    async with ScriptedSmtpServer(ServerScript(mail_reply="421 4.3.2 shutting down")) as server:
        session = await connect(server)
        result = await session.send(envelope(), rcpts("a@x.test", "b@x.test"), BODY)
        assert codes(result) == ["421 4.3.2 shutting down"] * 2
        assert result.connection_lost and not session.usable
        await session.close()


async def test_final_reply_applies_to_all_accepted() -> None:
    async with ScriptedSmtpServer(ServerScript(data_reply="452 4.3.1 out of space")) as server:
        session = await connect(server)
        result = await session.send(envelope(), rcpts("a@x.test", "b@x.test"), BODY)
        assert codes(result) == ["452 4.3.1 out of space"] * 2 and session.usable
        assert result.data_reply == Reply(452, "4.3.1", "out of space")
        await session.close()


async def test_idle_connection_closed_by_server_is_not_usable(sink: ScriptedSmtpServer) -> None:
    session = await connect(sink)
    await sink.stop()
    for _ in range(100):
        if not session.usable:
            break
        await asyncio.sleep(0.01)
    assert not session.usable
    result = await session.send(envelope(), rcpts("a@x.test"), BODY)
    assert result.connection_lost and result.results[0].reply.code == 451
    await session.close()


async def test_source_address_binds_local_side(sink: ScriptedSmtpServer) -> None:
    session = await connect(sink, source_address="127.0.0.2")
    assert session.local_address == "127.0.0.2"
    await session.send(envelope(), rcpts("a@x.test"), BODY)
    await session.close()
    [message] = await sink.wait_for_messages(1)
    assert message.peer[0] == "127.0.0.2"


async def test_starttls_verified_with_ca(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    async with ScriptedSmtpServer(tls_context=server_tls) as server:
        session = await connect(server, tls_context=client_tls, server_hostname="mx.test")
        assert session.tls_version is not None and session.tls_version.startswith("TLS")
        assert not session.extensions.starttls and session.remote_host == "mx.test"
        result = await session.send(envelope(), rcpts("a@x.test"), BODY)
        await session.close()
        assert result.results[0].reply.code == 250
        [message] = await server.wait_for_messages(1)
        assert message.tls and server.sessions[0].tls_version == session.tls_version
        assert server.sessions[0].commands.count("EHLO client.test") == 2


async def test_starttls_opportunistic_without_verification(server_tls: ssl.SSLContext) -> None:
    async with ScriptedSmtpServer(tls_context=server_tls) as server:
        session = await connect(server)
        assert session.tls_version is not None
        await session.close()
        session = await connect(server, use_starttls=False)
        assert session.tls_version is None and session.extensions.starttls
        await session.close()


async def test_starttls_handshake_failure_then_retry_in_clear(server_tls: ssl.SSLContext) -> None:
    untrusting = ssl.create_default_context()  # does not know the test CA
    async with ScriptedSmtpServer(tls_context=server_tls) as server:
        with pytest.raises(SmtpConnectError) as info:
            await connect(server, tls_context=untrusting, server_hostname="mx.test")
        assert info.value.tls_failure
        session = await connect(server, use_starttls=False)
        result = await session.send(envelope(), rcpts("a@x.test"), BODY)
        await session.close()
        assert result.results[0].reply.code == 250


@pytest.fixture
def threaded_sink() -> Iterator[ScriptedSmtpServer]:
    with ScriptedSmtpServer().run_in_thread() as server:
        yield server


async def test_server_in_thread(threaded_sink: ScriptedSmtpServer) -> None:
    session = await connect(threaded_sink)
    for i in range(5):
        await session.send(envelope(), rcpts(f"r{i}@x.test"), BODY)
    await session.close()
    messages = await asyncio.to_thread(threaded_sink.wait_for_messages_sync, 5, 5.0)
    assert len(messages) == 5 and (await threaded_sink.wait_for_messages(5)) == messages
    with pytest.raises(TimeoutError):
        await threaded_sink.wait_for_messages(6, timeout=0.05)
    assert threaded_sink.max_concurrent == 1 and threaded_sink.connections == 1


async def test_concurrent_sessions_counted(sink: ScriptedSmtpServer) -> None:
    sessions = await asyncio.gather(*(connect(sink) for _ in range(4)))
    results = await asyncio.gather(
        *(s.send(envelope(), rcpts(f"r{i}@x.test"), BODY) for i, s in enumerate(sessions))
    )
    await asyncio.gather(*(s.close() for s in sessions))
    assert all(r.results[0].reply.code == 250 for r in results)
    assert sink.max_concurrent == 4 and sink.connections == 4
    assert len(await sink.wait_for_messages(4)) == 4


async def test_cancelled_send_drops_the_session() -> None:
    async with ScriptedSmtpServer(ServerScript(hang_at="mail")) as server:
        session = await connect(server)
        task = asyncio.create_task(session.send(envelope(), rcpts("a@x.test"), BODY))
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError, match="in progress"):
            await session.send(envelope(), rcpts("b@x.test"), BODY)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not session.usable
        await session.close()
