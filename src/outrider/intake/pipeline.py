"""Checks and the ordered pipeline that asks them, in the spirit of Haraka's hooks.

A check is a small object with one job. It answers at up to three points of a
transaction: MAIL (the sender), RCPT (each recipient) and the end of the message
(the content); it overrides only the hooks it needs. The pipeline asks the checks of
a phase in order, and the first refusal wins. Adding a check means adding it to the
list the pipeline is built from (:func:`outrider.intake.build.intake_checks`): neither
the SMTP session nor the scheduler changes. A check may also map an accepted
recipient to the address to queue instead (``map_recipient``), as ``Postmaster`` is.

Answers are "sync or awaitable" (see :mod:`outrider.intake.verdict`): while every
check answers at once, so does the pipeline; from the first awaitable on, the rest of
the phase runs in one coroutine that the caller awaits.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import TypeVar

from outrider.intake.submission import MailEnvelope, MailRecipient, Submission
from outrider.intake.verdict import CONTINUE, Verdict, VerdictResult
from outrider.smtp.replies import LOCAL_ERROR

log = logging.getLogger("outrider.intake")

# A check that fails refuses for now (451 4.3.0) rather than letting mail through.
CHECK_FAILED = Verdict.reject(LOCAL_ERROR)


class Check:
    """Base class of intake checks: every hook says "continue" unless overridden."""

    def at_mail(self, submission: Submission, sender: str) -> VerdictResult:
        """MAIL FROM: ``sender`` is the reverse-path ("" for the null sender)."""
        return CONTINUE

    def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> VerdictResult:
        """RCPT TO: one recipient; a refusal drops only this recipient."""
        return CONTINUE

    def at_message(
        self, submission: Submission, envelope: MailEnvelope, content: bytes
    ) -> VerdictResult:
        """End of data: ``content`` is the message as received (before header completion);
        for a message over 256 KiB, spilled to the spool, its header section only."""
        return CONTINUE

    def map_recipient(self, submission: Submission, recipient: str) -> str:
        """The address to queue for an accepted ``recipient`` (itself unless the check
        rewrites it, e.g. ``Postmaster``). Asked once the message checks passed, so every
        check sees the addresses as the client gave them."""
        return recipient

    def expand_recipient(
        self, submission: Submission, recipient: MailRecipient
    ) -> tuple[MailRecipient, ...] | None:
        """The recipients an accepted (and mapped) recipient stands for, e.g. an alias's
        targets; None when it stands for itself. Asked after :meth:`map_recipient`."""
        return None


C = TypeVar("C", bound=Check)
Ask = Callable[[Check], VerdictResult]


def _overrides(check: Check, hook: str) -> bool:
    return getattr(type(check), hook) is not getattr(Check, hook)


class IntakePipeline:
    """An ordered list of checks, split by the phases each one takes part in."""

    def __init__(self, checks: Iterable[Check]) -> None:
        self.checks: tuple[Check, ...] = tuple(checks)
        self._mail = tuple(c for c in self.checks if _overrides(c, "at_mail"))
        self._rcpt = tuple(c for c in self.checks if _overrides(c, "at_rcpt"))
        self._message = tuple(c for c in self.checks if _overrides(c, "at_message"))
        self._map = tuple(c for c in self.checks if _overrides(c, "map_recipient"))
        self._expand = tuple(c for c in self.checks if _overrides(c, "expand_recipient"))

    def find(self, kind: type[C]) -> C | None:
        """The first check of type ``kind`` (to carry its state over a reload)."""
        return next((c for c in self.checks if isinstance(c, kind)), None)

    # The three phases share _run; each passes a closure over its own arguments. A
    # phase with no check returns at once, the usual case for at_message.
    def at_mail(self, submission: Submission, sender: str) -> VerdictResult:
        if not self._mail:
            return CONTINUE
        return _run(self._mail, lambda check: check.at_mail(submission, sender))

    def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> VerdictResult:
        if not self._rcpt:
            return CONTINUE
        return _run(self._rcpt, lambda check: check.at_rcpt(submission, sender, recipient))

    def at_message(
        self, submission: Submission, envelope: MailEnvelope, content: bytes
    ) -> VerdictResult:
        if not self._message:
            return CONTINUE
        return _run(self._message, lambda check: check.at_message(submission, envelope, content))

    def map_recipients(self, submission: Submission, mail: MailEnvelope) -> MailEnvelope:
        """``mail`` with each recipient's address as the checks map it (ORCPT and NOTIFY
        kept as given), then expanded. A mapped address already in the envelope is not
        added twice. A check that raises propagates: the caller refuses the message."""
        mail = self._mapped(submission, mail)
        if not self._expand:
            return mail
        recipients: list[MailRecipient] = []
        seen: set[str] = set()
        changed = False
        for rcpt in mail.recipients:
            expanded: tuple[MailRecipient, ...] = (rcpt,)
            for check in self._expand:
                more = check.expand_recipient(submission, rcpt)
                if more is not None:
                    expanded, changed = more, True
                    break
            for one in expanded:
                if one.address not in seen:
                    seen.add(one.address)
                    recipients.append(one)
        return replace(mail, recipients=tuple(recipients)) if changed else mail

    def _mapped(self, submission: Submission, mail: MailEnvelope) -> MailEnvelope:
        if not self._map:
            return mail
        recipients: list[MailRecipient] = []
        seen = {r.address for r in mail.recipients}
        changed = False
        for rcpt in mail.recipients:
            address = rcpt.address
            for check in self._map:
                address = check.map_recipient(submission, address)
            if address == rcpt.address:
                recipients.append(rcpt)
                continue
            changed = True
            if address not in seen:
                seen.add(address)
                recipients.append(replace(rcpt, address=address))
        return replace(mail, recipients=tuple(recipients)) if changed else mail


def _failed(check: Check) -> Verdict:
    log.exception("intake check %s failed", type(check).__name__)
    return CHECK_FAILED


def _run(checks: Sequence[Check], ask: Ask) -> VerdictResult:
    for index, check in enumerate(checks):
        try:
            result = ask(check)
        except Exception:
            return _failed(check)
        if not isinstance(result, Verdict):
            return _finish(check, result, checks[index + 1 :], ask)
        if result.reply is not None:  # refused
            return result
    return CONTINUE


async def _finish(
    check: Check, pending: Awaitable[Verdict], rest: Sequence[Check], ask: Ask
) -> Verdict:
    """The rest of a phase once ``check`` answered with an awaitable."""
    try:
        verdict = await pending
    except Exception:
        return _failed(check)
    if verdict.reply is not None or not rest:
        return verdict
    result = _run(rest, ask)
    return result if isinstance(result, Verdict) else await result
