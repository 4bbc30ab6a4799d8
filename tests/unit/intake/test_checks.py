"""The standard checks: sender ownership, per-user rate, relay control."""

from __future__ import annotations

from dataclasses import replace

from outrider.auth.rates import UserRateLimiter
from outrider.intake import CONTINUE, IntakePipeline, Verdict
from outrider.intake.checks import (
    SENDER_NOT_OWNED,
    USER_RATE_EXCEEDED,
    Relay,
    SenderOwnership,
    UserRate,
)
from outrider.intake.verdict import VerdictResult
from outrider.smtp.replies import RELAY_DENIED
from outrider.throttle import LocalThrottle, RateLimit
from tests.support.inbound import FakeUsers
from tests.unit.intake.support import SMTP

ALICE = replace(SMTP, auth_user="alice")
USERS = FakeUsers({"alice": "pw"}, senders={"alice": ["alice@a.test"]}, rates={"alice": "2/h"})


def test_sender_ownership() -> None:
    check = SenderOwnership(USERS)
    assert check.at_mail(ALICE, "alice@a.test") is CONTINUE
    refused = check.at_mail(ALICE, "ceo@bank.test")
    assert refused.reply == SENDER_NOT_OWNED
    assert (SENDER_NOT_OWNED.code, SENDER_NOT_OWNED.enhanced) == (553, "5.7.1")
    assert check.at_mail(SMTP, "ceo@bank.test") is CONTINUE  # anonymous: not this check's job
    assert SenderOwnership(None).at_mail(ALICE, "ceo@bank.test") is CONTINUE


def now(result: VerdictResult) -> Verdict:
    assert isinstance(result, Verdict), "a local throttle answers at once"
    return result


def test_user_rate_counts_each_mail_of_a_user() -> None:
    clock = [1000.0]
    check = UserRate(USERS, monotonic=lambda: clock[0])
    assert [now(check.at_mail(ALICE, "")).refused for _ in range(3)] == [False, False, True]
    assert now(check.at_mail(ALICE, "")).reply == USER_RATE_EXCEEDED
    assert (USER_RATE_EXCEEDED.code, USER_RATE_EXCEEDED.enhanced) == (450, "4.7.1")
    assert check.at_mail(SMTP, "") is CONTINUE  # anonymous clients have no user rate
    clock[0] += 1800  # one message per half hour comes back
    assert check.at_mail(ALICE, "") is CONTINUE


class RemoteThrottle:
    """Stands in for a shared throttle: the same state, only through awaitables."""

    def __init__(self) -> None:
        self.state = LocalThrottle()

    async def rate(self, key: str, limit: RateLimit, now: float) -> float:
        return await self.state.rate(key, limit, now)


async def test_user_rate_with_a_shared_throttle_answers_with_an_awaitable() -> None:
    limiter = UserRateLimiter(RemoteThrottle())  # type: ignore[arg-type]
    pipeline = IntakePipeline([UserRate(USERS, limiter, monotonic=lambda: 1000.0)])
    verdicts = []
    for _ in range(3):
        pending = pipeline.at_mail(ALICE, "alice@a.test")
        assert not isinstance(pending, Verdict)
        verdicts.append(await pending)
    assert [v.reply for v in verdicts] == [None, None, USER_RATE_EXCEEDED]


def test_relay_for_domains_trusted_clients_and_authenticated_users() -> None:
    check = Relay(["relay.test", "BÜCHER.test"])
    assert check.at_rcpt(SMTP, "", "u@relay.test") is CONTINUE
    assert check.at_rcpt(SMTP, "", "u@xn--bcher-kva.test") is CONTINUE  # normalised
    assert check.at_rcpt(SMTP, "", "u@outside.test").reply == RELAY_DENIED
    assert check.at_rcpt(replace(SMTP, client_trusted=True), "", "u@outside.test") is CONTINUE
    assert check.at_rcpt(ALICE, "", "u@outside.test") is CONTINUE
