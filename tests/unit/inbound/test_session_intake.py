"""The session turns intake verdicts into replies: at once for in-process checks, in a
task for a check that answers with an awaitable; a disconnect verdict closes."""

from __future__ import annotations

import asyncio
import smtplib

from outrider.intake import CONTINUE, Check, MailEnvelope, Submission, Verdict
from outrider.intake.verdict import VerdictResult
from outrider.smtp.replies import Reply
from tests.support.inbound import FakeUsers, in_thread, raw_dialogue, start_server

NO_SUCH_USER = Reply(550, "5.1.1", "No such user")
GO_AWAY = Reply(421, "4.7.0", "Go away")
SPAM = Reply(550, "5.7.1", "Looks like spam")


class SlowRecipients(Check):
    """Refuses ``nobody@`` after a pause, as a check asking another process would."""

    def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> VerdictResult:
        return self._lookup(recipient)

    async def _lookup(self, recipient: str) -> Verdict:
        await asyncio.sleep(0.01)
        return Verdict.reject(NO_SUCH_USER) if recipient.startswith("nobody@") else CONTINUE


class Banned(Check):
    def at_mail(self, submission: Submission, sender: str) -> VerdictResult:
        return Verdict.disconnect(GO_AWAY) if sender == "spammer@bad.test" else CONTINUE


class NoSpam(Check):
    def at_message(
        self, submission: Submission, envelope: MailEnvelope, content: bytes
    ) -> VerdictResult:
        return Verdict.reject(SPAM) if b"viagra" in content else CONTINUE


async def test_an_awaitable_check_answers_a_pipelined_batch_in_order() -> None:
    server = await start_server(checks=[SlowRecipients()])
    try:
        out = await in_thread(
            raw_dialogue,
            server.port,
            b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@relay.test>\r\n"
            b"RCPT TO:<x@relay.test>\r\nDATA\r\n",
            b"Subject: s\r\n\r\nb\r\n.\r\nQUIT\r\n",
        )
        codes = [line[:3] for line in out.split(b"\r\n") if line[3:4] == b" "]
        assert codes == [b"220", b"250", b"250", b"550", b"250", b"354", b"250", b"221"]
        assert b"550 5.1.1 No such user" in out
        [stored] = server.stored
        assert [r.address for r in stored.envelope.recipients] == ["x@relay.test"]
    finally:
        await server.stop()


async def test_a_disconnect_verdict_sends_421_and_closes() -> None:
    server = await start_server(checks=[Banned()])
    try:
        out = await in_thread(
            raw_dialogue,
            server.port,
            b"EHLO c.test\r\nMAIL FROM:<spammer@bad.test>\r\nRCPT TO:<x@relay.test>\r\n",
        )
        assert out.endswith(b"\r\n421 4.7.0 Go away\r\n")  # nothing after it: closed
    finally:
        await server.stop()


async def test_a_message_refusal_stores_nothing_and_the_session_goes_on() -> None:
    server = await start_server(checks=[NoSpam()])
    try:

        def send() -> tuple[int, int]:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                try:
                    smtp.sendmail("a@b.test", ["x@relay.test"], b"Subject: viagra\r\n\r\nb\r\n")
                    first = 250
                except smtplib.SMTPDataError as exc:
                    first = exc.smtp_code
                smtp.sendmail("a@b.test", ["x@relay.test"], b"Subject: hello\r\n\r\nb\r\n")
                return first, len(server.stored)

        assert await in_thread(send) == (550, 1)
        [stored] = server.stored
        assert b"Subject: hello" in stored.data
        assert stored.envelope.listener == "test"
    finally:
        await server.stop()


async def test_each_transaction_gets_the_session_facts_of_its_time() -> None:
    server = await start_server(
        relay_networks=("10.9.9.9/32",),
        auth_mechanisms=("PLAIN",),
        auth_plaintext=True,
        users=FakeUsers({"alice": "pw"}),
    )
    try:

        def send() -> None:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                smtp.ehlo("c.test")
                smtp.sendmail("a@b.test", ["x@relay.test"], b"Subject: 1\r\n\r\nb\r\n")
                smtp.sendmail("a@b.test", ["x@relay.test"], b"Subject: 2\r\n\r\nb\r\n")
                smtp.login("alice", "pw")
                smtp.sendmail("a@b.test", ["x@outside.test"], b"Subject: 3\r\n\r\nb\r\n")
                utf8 = ["SMTPUTF8"]
                smtp.sendmail("a@b.test", ["x@relay.test"], b"Subject: 4\r\n\r\nb\r\n", utf8)

        await in_thread(send)
        envelopes = [s.envelope for s in server.stored]
        assert [e.auth_user for e in envelopes] == ["", "", "alice", "alice"]
        assert [e.smtputf8 for e in envelopes] == [False, False, False, True]
        protocols = [s.data.split(b" with ", 1)[1].split(b" ", 1)[0] for s in server.stored]
        assert protocols == [b"ESMTP", b"ESMTP", b"ESMTPA", b"UTF8SMTPA"]
    finally:
        await server.stop()
