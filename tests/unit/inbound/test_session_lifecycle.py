"""What the session hands the intake for each transaction (the MAIL parameters and the
session's facts of the moment), what each recipient asked for, and the idle clock."""

from __future__ import annotations

from typing import Any, cast

from outrider.inbound.session import PROGRESS_BYTES, InboundSession
from outrider.intake import CONTINUE, Check, MailEnvelope, Submission, VerdictResult
from outrider.message.envelope import Notify, Ret
from tests.support.inbound import in_thread, raw_dialogue, start_server


class Seen(Check):
    """Records the Submission of every MAIL and the envelope of every message."""

    def __init__(self) -> None:
        self.submissions: list[Submission] = []
        self.envelopes: list[MailEnvelope] = []

    def at_mail(self, submission: Submission, sender: str) -> VerdictResult:
        self.submissions.append(submission)
        return CONTINUE

    def at_message(
        self, submission: Submission, envelope: MailEnvelope, content: bytes
    ) -> VerdictResult:
        self.envelopes.append(envelope)
        return CONTINUE


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
        [envelope] = seen.envelopes
        first, second = envelope.recipients
        assert (first.address, first.notify) == ("x@relay.test", Notify.SUCCESS | Notify.FAILURE)
        assert first.orcpt is not None and first.orcpt.endswith("orig@relay.test")
        assert (second.address, second.notify, second.orcpt) == ("y@relay.test", None, None)
    finally:
        await server.stop()


class FakeTransport:
    """Just enough of an asyncio transport to drive a session by hand."""

    def __init__(self) -> None:
        self.written = b""
        self.closing = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_the_idle_clock_restarts_on_progress_not_on_every_byte() -> None:
    # Slowloris: a byte now and then must not keep a connection alive. Outside DATA a
    # complete line is progress; inside DATA every PROGRESS_BYTES octets.
    server = await start_server()
    session = InboundSession(server.ctx)
    session.connection_made(cast(Any, FakeTransport()))
    try:
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
