"""Helpers for the intake tests: submissions, envelopes and a check that records calls."""

from __future__ import annotations

from collections.abc import Awaitable

from outrider.intake import Check, MailEnvelope, MailRecipient, Source, Submission, Verdict
from outrider.intake.verdict import CONTINUE, VerdictResult
from outrider.smtp.replies import Reply

SMTP = Submission(source=Source.SMTP, listener="127.0.0.1:25", client_ip="192.0.2.1", helo="c")
MAIL = MailEnvelope("s@a.test", (MailRecipient("r@b.test"),))
CONTENT = b"Subject: hi\r\n\r\nbody\r\n"
NO = Reply(550, "5.7.1", "No")


async def later(verdict: Verdict) -> Verdict:
    return verdict


class Recording(Check):
    """Answers ``verdict`` at every phase (``awaitable``: through a coroutine) and
    appends its name to ``log``."""

    def __init__(
        self, name: str, log: list[str], verdict: Verdict = CONTINUE, *, awaitable: bool = False
    ) -> None:
        self.name = name
        self.log = log
        self.verdict = verdict
        self.awaitable = awaitable

    def _answer(self, phase: str) -> VerdictResult:
        self.log.append(f"{phase}:{self.name}")
        result: Verdict | Awaitable[Verdict] = self.verdict
        return later(self.verdict) if self.awaitable else result

    def at_mail(self, submission: Submission, sender: str) -> VerdictResult:
        return self._answer("mail")

    def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> VerdictResult:
        return self._answer("rcpt")

    def at_message(
        self, submission: Submission, envelope: MailEnvelope, content: bytes
    ) -> VerdictResult:
        return self._answer("message")
