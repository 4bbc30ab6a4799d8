"""Which notices a message owes once it is final, and whom each one reports on."""

from __future__ import annotations

import pytest

from outrider.dsn.notices import (
    DELAYED,
    FAILED,
    RELAYED,
    REMOVED_WITH_DSN,
    REMOVED_WITHOUT_DSN,
    final_notices,
    notice_id,
    notice_recipients,
    reports_failure,
)
from outrider.message.envelope import Envelope, Notify, RcptStatus, Recipient

SUPPRESSED = "550 5.7.1 <user@example.org> is suppressed (bad-mailbox, 2026-12-03)"


def bounced(address: str = "user@example.org", **kw: object) -> Recipient:
    kw.setdefault("last_reply", "550 5.1.1 no such user")
    kw.setdefault("last_mta", "mx.example.org")
    return Recipient(address, status=RcptStatus.BOUNCED, **kw)  # type: ignore[arg-type]


def relayed(address: str = "ok@example.org", *, owed: bool = True) -> Recipient:
    return Recipient(address, notify=Notify.SUCCESS, status=RcptStatus.DELIVERED, relayed_owed=owed)


def message(*recipients: Recipient, sender: str = "sender@example.com") -> Envelope:
    return Envelope("Q1", sender, list(recipients), 0.0)


def test_the_kinds_are_the_letters_persisted_in_the_spool() -> None:
    # stored in the envelope's ``notices`` and in DSN queue ids: the letters are a format
    assert (FAILED, DELAYED, RELAYED) == ("F", "D", "S")


def test_a_dsn_queue_id_is_derived_from_the_original_and_the_kind() -> None:
    assert notice_id("4Q7xYz", FAILED) == "4Q7xYz-F"
    assert notice_id("4Q7xYz", RELAYED) != notice_id("4Q7xYz", FAILED)


class TestReportsFailure:
    def test_a_bounced_recipient_is_reported(self) -> None:
        assert reports_failure(bounced())

    @pytest.mark.parametrize("status", [RcptStatus.PENDING, RcptStatus.DELIVERED])
    def test_only_a_bounce_is_a_failure(self, status: RcptStatus) -> None:
        rcpt = bounced()
        rcpt.status = status
        assert not reports_failure(rcpt)

    def test_notify_without_failure_is_not_reported(self) -> None:
        assert not reports_failure(bounced(notify=Notify.DELAY | Notify.SUCCESS))
        assert not reports_failure(bounced(notify=Notify.NEVER))
        assert reports_failure(bounced(notify=Notify.FAILURE))

    def test_removed_by_the_operator_without_dsn_is_not_reported(self) -> None:
        assert not reports_failure(bounced(last_reply=REMOVED_WITHOUT_DSN, last_mta=""))
        assert reports_failure(bounced(last_reply=REMOVED_WITH_DSN, last_mta=""))

    def test_a_suppressed_recipient_is_not_reported(self) -> None:
        assert not reports_failure(bounced(last_reply=SUPPRESSED, last_mta=""))


class TestFinalNotices:
    def test_a_bounce_owes_a_failure_notice(self) -> None:
        assert final_notices(message(bounced(), relayed(owed=False))) == FAILED

    def test_a_relayed_delivery_owes_a_success_notice(self) -> None:
        assert final_notices(message(relayed())) == RELAYED

    def test_both_kinds_when_both_are_owed(self) -> None:
        assert final_notices(message(bounced(), relayed())) == FAILED + RELAYED

    @pytest.mark.parametrize("sender", ["", "<>"])
    def test_a_bounce_never_owes_a_notice(self, sender: str) -> None:
        assert final_notices(message(bounced(), relayed(), sender=sender)) == ""

    def test_nothing_owed(self) -> None:
        unreported = bounced(notify=Notify.NEVER)
        assert final_notices(message(unreported, relayed(owed=False))) == ""

    def test_a_relayed_notice_is_owed_only_once_delivered(self) -> None:
        pending = relayed()
        pending.status = RcptStatus.PENDING
        assert final_notices(message(pending)) == ""


class TestNoticeRecipients:
    def test_a_failure_notice_reports_the_reported_bounces_only(self) -> None:
        a, b = bounced("a@example.org"), bounced("b@example.org", notify=Notify.NEVER)
        env = message(a, b, relayed(), Recipient("p@example.org"))
        assert notice_recipients(env, FAILED) == [a]

    def test_a_relayed_notice_reports_the_delivered_ones_owed(self) -> None:
        owed, not_owed = relayed("a@example.org"), relayed("b@example.org", owed=False)
        pending = relayed("c@example.org")
        pending.status = RcptStatus.PENDING
        env = message(bounced(), owed, not_owed, pending)
        assert notice_recipients(env, RELAYED) == [owed]

    def test_a_delay_notice_reports_the_pending_ones_that_want_delays(self) -> None:
        waiting = Recipient("a@example.org")
        silent = Recipient("b@example.org", notify=Notify.FAILURE)
        env = message(waiting, silent, bounced(), relayed())
        assert notice_recipients(env, DELAYED) == [waiting]
