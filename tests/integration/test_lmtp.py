"""LMTP delivery to a scripted LMTP server on loopback TCP and on a Unix socket: each
recipient's reply after the data is its own outcome, sessions are reused with RSET and
closed with QUIT, and connection trouble is a deferral."""

from __future__ import annotations

import asyncio
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from outrider.config.loader import parse_config
from outrider.config.model import DomainPolicy
from outrider.delivery.lmtp_client import LmtpTarget
from outrider.delivery.lmtp_transport import LmtpSettings, LmtpTransport
from outrider.delivery.transport import DeliveryReport, Route
from outrider.message.envelope import Envelope, Recipient
from outrider.policy.outcome import Scope
from outrider.smtp.replies import Reply
from outrider.spool.reader import StoredBody
from tests.support.lmtp_server import LmtpScript, LmtpServer

BODY = b"Subject: lmtp\r\n\r\nhello\r\n.leading dot\r\n"


@pytest.fixture
def policy(tmp_path: Path) -> DomainPolicy:
    config = parse_config(
        f'[server]\nhostname = "mx.test"\nstate-dir = "{tmp_path}/state"\n'
        '[dns]\nnameservers = ["127.0.0.1:9"]\n[[listener]]\naddress = "127.0.0.1:0"\n'
        '[domain."*"]\nsmtp-command-timeout = "10s"\nconnect-timeout = "10s"\n'
    )
    return config.policy_for("example.test")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path, for Unix sockets (sun_path holds 108 octets)."""
    with tempfile.TemporaryDirectory(prefix="lmtp-", dir="/tmp") as name:
        yield Path(name)


def route(policy: DomainPolicy, seen: list[tuple[Reply, str, str]] | None = None) -> Route:
    def observe(reply: Reply, phase: str, host: str) -> None:
        if seen is not None:
            seen.append((reply, phase, host))

    return Route("example.test", "lmtp", "default", policy, observe)


def outcomes(report: DeliveryReport) -> list[tuple[str, str, str]]:
    return [(r.recipient.address, str(r.reply), r.phase) for r in report.replies]


async def test_each_recipient_gets_its_own_reply_and_the_session_is_reused(
    policy: DomainPolicy,
) -> None:
    script = LmtpScript(
        rcpt_replies={"nobody@example.test": "550 5.1.1 no such user"},
        data_replies={
            "full@example.test": "452 4.2.2 mailbox full",
            "gone@example.test": "550 5.2.1 mailbox disabled",
        },
    )
    async with LmtpServer(script) as server:
        transport = LmtpTransport(LmtpSettings(server.target, "mx.test"))
        assert transport.destination("example.test", policy) == f"lmtp:127.0.0.1:{server._port}"
        opened = await transport.open(route(policy))
        conn = opened.connection
        assert conn is not None
        names = ["ok", "full", "nobody", "gone", "ok2"]
        rcpts = [Recipient(f"{n}@example.test") for n in names]
        env = Envelope("Q1", "s@sender.test", rcpts, 0.0)
        report = await conn.deliver(env, rcpts, BODY)
        assert outcomes(report) == [
            ("ok@example.test", "250 2.0.0 <ok@example.test> delivered", "data-end"),
            ("full@example.test", "452 4.2.2 mailbox full", "data-end"),
            ("nobody@example.test", "550 5.1.1 no such user", "rcpt"),
            ("gone@example.test", "550 5.2.1 mailbox disabled", "data-end"),
            ("ok2@example.test", "250 2.0.0 <ok2@example.test> delivered", "data-end"),
        ]
        assert report.remote_host == server.target.describe()
        assert report.destination_ip == "127.0.0.1" and report.source_ip == "127.0.0.1"
        assert not report.connection_lost and conn.usable
        [msg] = server.messages
        assert msg.sender == "s@sender.test"
        assert msg.delivered == ["ok@example.test", "ok2@example.test"]
        assert msg.data == BODY

        # A second batch on the same connection: RSET in between, QUIT at the end.
        env2 = Envelope("Q2", "", [Recipient("ok@example.test")], 0.0)
        report = await conn.deliver(env2, env2.recipients, BODY)
        assert [r.reply.code for r in report.replies] == [250]
        await conn.close()
        assert server.connections == 1
        assert [c.split()[0] for c in server.commands] == [
            "LHLO", "MAIL", "RCPT", "RCPT", "RCPT", "RCPT", "RCPT", "DATA",
            "RSET", "MAIL", "RCPT", "DATA", "QUIT",
        ]  # fmt: skip
        assert server.commands[0] == "LHLO mx.test"


async def test_over_a_unix_socket_with_a_big_streamed_body(
    policy: DomainPolicy, short_dir: Path, tmp_path: Path
) -> None:
    body = b"Subject: big\r\n\r\n" + b"".join(b".%07d line of text\r\n" % i for i in range(80000))
    spool_file = tmp_path / "spool"
    spool_file.write_bytes(b"PREFIX" + body)
    stored = StoredBody("Q1", str(spool_file), 6, len(body), zlib.crc32(body))
    async with LmtpServer(path=str(short_dir / "lmtp.sock")) as server:
        transport = LmtpTransport(LmtpSettings(LmtpTarget.parse(f"unix:{server.path}"), "mx.test"))
        assert transport.destination("x.test", policy) == f"lmtp:unix:{server.path}"
        opened = await transport.open(route(policy))
        assert opened.connection is not None
        rcpts = [Recipient("a@example.test"), Recipient("b@example.test")]
        report = await opened.connection.deliver(
            Envelope("Q1", "s@x.test", rcpts, 0.0), rcpts, stored
        )
        await opened.connection.close()
        assert [(r.reply.code, r.phase) for r in report.replies] == [(250, "data-end")] * 2
        assert report.destination_ip == "" and report.source_ip == ""
        [msg] = server.messages
        assert len(body) > 1_500_000
        assert msg.data == body


async def test_a_session_lost_between_replies_keeps_those_given(policy: DomainPolicy) -> None:
    async with LmtpServer(LmtpScript(drop_after_data_replies=1)) as server:
        opened = await LmtpTransport(LmtpSettings(server.target, "mx.test")).open(route(policy))
        conn = opened.connection
        assert conn is not None
        rcpts = [Recipient("a@example.test"), Recipient("b@example.test")]
        report = await conn.deliver(Envelope("Q1", "s@x.test", rcpts, 0.0), rcpts, BODY)
        assert [r.reply.code for r in report.replies] == [250, 451]
        assert report.replies[1].reply.enhanced == "4.4.2"
        assert report.connection_lost and not conn.usable
        await conn.close()


async def test_no_server_or_a_refusing_one_defers_the_batch(
    policy: DomainPolicy, short_dir: Path
) -> None:
    nothing = LmtpTransport(LmtpSettings(LmtpTarget(path=str(short_dir / "none.sock")), "mx.test"))
    opened = await nothing.open(route(policy))
    assert opened.connection is None and opened.failure is not None
    assert opened.failure.status == "4.4.1" and opened.failure.scope is Scope.SITE

    seen: list[tuple[Reply, str, str]] = []
    for greeting, status in (("554 5.3.2 not now", "4.4.1"), ("421 4.3.2 shutting down", "4.3.2")):
        async with LmtpServer(LmtpScript(greeting=greeting)) as server:
            transport = LmtpTransport(LmtpSettings(server.target, "mx.test"))
            opened = await transport.open(route(policy, seen))
            assert opened.connection is None and opened.failure is not None
            assert opened.failure.status == status
            assert opened.failure.verdict.value == "transient"
    assert [(r.code, phase) for r, phase, _ in seen] == [(554, "greeting"), (421, "greeting")]


async def test_a_server_that_never_answers_the_data_times_out_per_policy(tmp_path: Path) -> None:
    config = parse_config(
        f'[server]\nhostname = "mx.test"\nstate-dir = "{tmp_path}/state"\n'
        '[dns]\nnameservers = ["127.0.0.1:9"]\n[[listener]]\naddress = "127.0.0.1:0"\n'
        '[domain."*"]\nsmtp-data-termination-timeout = "1s"\n'
    )
    policy = config.policy_for("example.test")
    async with LmtpServer(LmtpScript(data_delay=30)) as server:
        opened = await LmtpTransport(LmtpSettings(server.target, "mx.test")).open(route(policy))
        conn = opened.connection
        assert conn is not None
        rcpts = [Recipient("a@example.test"), Recipient("b@example.test")]
        report = await asyncio.wait_for(
            conn.deliver(Envelope("Q1", "s@x.test", rcpts, 0.0), rcpts, BODY), 20
        )
        assert [(str(r.reply), r.phase) for r in report.replies] == [
            ("451 4.4.2 Timeout waiting for end of data reply", "data-end")
        ] * 2
        assert report.connection_lost and not conn.usable
        await conn.close()
