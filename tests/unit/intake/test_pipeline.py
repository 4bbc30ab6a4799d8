"""The pipeline asks checks in order, stops at the first refusal, and stays synchronous
until a check answers with an awaitable."""

from __future__ import annotations

import inspect
import logging

import pytest

from outrider.intake import (
    CONTINUE,
    Action,
    Check,
    IntakePipeline,
    MailEnvelope,
    MailRecipient,
    Submission,
    Verdict,
)
from outrider.intake.pipeline import CHECK_FAILED
from outrider.intake.verdict import VerdictResult
from outrider.smtp.replies import Reply
from tests.unit.intake.support import CONTENT, MAIL, NO, SMTP, Recording


def test_checks_run_in_order_at_every_phase() -> None:
    log: list[str] = []
    pipeline = IntakePipeline([Recording("a", log), Recording("b", log)])
    assert pipeline.at_mail(SMTP, "s@a.test") is CONTINUE
    assert pipeline.at_rcpt(SMTP, "s@a.test", "r@b.test") is CONTINUE
    assert pipeline.at_message(SMTP, MAIL, CONTENT) is CONTINUE
    assert log == ["mail:a", "mail:b", "rcpt:a", "rcpt:b", "message:a", "message:b"]


def test_first_refusal_wins_and_later_checks_are_not_asked() -> None:
    log: list[str] = []
    refuse = Verdict.reject(NO)
    pipeline = IntakePipeline(
        [Recording("a", log), Recording("b", log, refuse), Recording("c", log)]
    )
    assert pipeline.at_rcpt(SMTP, "s@a.test", "r@b.test") is refuse
    assert log == ["rcpt:a", "rcpt:b"]


def test_only_the_phases_a_check_overrides_are_asked() -> None:
    asked: list[str] = []

    class RcptOnly(Check):
        def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> VerdictResult:
            asked.append(recipient)
            return CONTINUE

    pipeline = IntakePipeline([RcptOnly()])
    pipeline.at_mail(SMTP, "s@a.test")
    pipeline.at_message(SMTP, MAIL, CONTENT)
    pipeline.at_rcpt(SMTP, "s@a.test", "r@b.test")
    assert asked == ["r@b.test"]
    assert IntakePipeline([]).at_mail(SMTP, "") is CONTINUE


async def test_every_hook_is_told_the_submission_and_what_its_phase_is_about() -> None:
    seen: list[tuple[object, ...]] = []

    class Spy(Check):
        def at_mail(self, submission: Submission, sender: str) -> VerdictResult:
            seen.append(("mail", submission, sender))
            return CONTINUE

        def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> VerdictResult:
            seen.append(("rcpt", submission, sender, recipient))
            return CONTINUE

        def at_message(
            self, submission: Submission, envelope: MailEnvelope, content: bytes
        ) -> VerdictResult:
            seen.append(("message", submission, envelope, content))
            return CONTINUE

        def map_recipient(self, submission: Submission, recipient: str) -> str:
            seen.append(("map", submission, recipient))
            return recipient

        def expand_recipient(
            self, submission: Submission, recipient: MailRecipient
        ) -> tuple[MailRecipient, ...] | None:
            seen.append(("expand", submission, recipient))
            return None

    pipeline = IntakePipeline([Spy()])
    pipeline.at_mail(SMTP, "s@a.test")
    pipeline.at_rcpt(SMTP, "s@a.test", "r@b.test")
    pipeline.at_message(SMTP, MAIL, CONTENT)
    assert pipeline.map_recipients(SMTP, MAIL) == MAIL
    assert seen == [
        ("mail", SMTP, "s@a.test"),
        ("rcpt", SMTP, "s@a.test", "r@b.test"),
        ("message", SMTP, MAIL, CONTENT),
        ("map", SMTP, "r@b.test"),
        ("expand", SMTP, MAIL.recipients[0]),
    ]


async def test_an_awaitable_answer_defers_the_rest_of_the_phase() -> None:
    log: list[str] = []
    refuse = Verdict.reject(NO)
    pipeline = IntakePipeline(
        [
            Recording("a", log),
            Recording("slow", log, awaitable=True),
            Recording("c", log, refuse, awaitable=True),
            Recording("d", log),
        ]
    )
    result = pipeline.at_mail(SMTP, "s@a.test")
    assert inspect.isawaitable(result)
    assert log == ["mail:a", "mail:slow"]  # nothing after the awaitable runs yet
    assert await result is refuse
    assert log == ["mail:a", "mail:slow", "mail:c"]


async def test_an_awaitable_continue_goes_on_with_sync_checks() -> None:
    log: list[str] = []
    pipeline = IntakePipeline([Recording("slow", log, awaitable=True), Recording("b", log)])
    result = pipeline.at_message(SMTP, MAIL, CONTENT)
    assert not isinstance(result, Verdict)
    assert await result is CONTINUE
    assert log == ["message:slow", "message:b"]


async def test_a_failing_check_refuses_temporarily(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Check):
        def at_mail(self, submission: Submission, sender: str) -> VerdictResult:
            raise RuntimeError("bug")

    class BrokenLater(Check):
        async def _fail(self) -> Verdict:
            raise RuntimeError("bug")

        def at_mail(self, submission: Submission, sender: str) -> VerdictResult:
            return self._fail()

    caplog.set_level(logging.ERROR, "outrider.intake")
    assert IntakePipeline([Broken()]).at_mail(SMTP, "") is CHECK_FAILED
    pending = IntakePipeline([BrokenLater()]).at_mail(SMTP, "")
    assert not isinstance(pending, Verdict)
    assert await pending is CHECK_FAILED
    # the log names the check at fault, with the error
    assert caplog.messages == ["intake check Broken failed", "intake check BrokenLater failed"]
    assert all(r.exc_info for r in caplog.records)
    assert CHECK_FAILED.reply == Reply(451, "4.3.0", "Local error in processing; try again later")


def test_verdicts_are_validated() -> None:
    assert Verdict.disconnect(Reply(421, "4.7.0", "Bye")).action is Action.DISCONNECT
    with pytest.raises(ValueError):
        Verdict.disconnect(Reply(550, "5.7.1", "a disconnect is a 421"))
    with pytest.raises(ValueError):
        Verdict.reject(Reply(250, "2.0.0", "not a refusal"))
    with pytest.raises(ValueError):
        Verdict(Action.CONTINUE, NO)
    assert not CONTINUE.refused and Verdict.reject(NO).refused


def test_find_returns_the_first_check_of_a_kind() -> None:
    log: list[str] = []
    first = Recording("a", log)
    assert IntakePipeline([first, Recording("b", log)]).find(Recording) is first
    assert IntakePipeline([]).find(Recording) is None
