"""One session's AUTH exchange: the failed-AUTH throttle around the SASL mechanism, the
delay before a failure reply, and the answers given to the protocol core.

The protocol core and the listener context are stand-ins recording what the exchange
does; the mechanisms (PLAIN, LOGIN) and the AUTH throttle are the real ones."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import pytest

from outrider.auth.throttle import AuthThrottle
from outrider.inbound.auth_exchange import (
    AUTH_BLOCKED,
    AUTH_BUSY,
    AUTH_UNAVAILABLE,
    AuthExchange,
)
from outrider.smtp import server as smtp
from outrider.smtp.replies import Reply
from tests.support.inbound import FakeUsers

if TYPE_CHECKING:
    from outrider.inbound.session import ListenerContext

CLIENT = "192.0.2.7"
GOOD = smtp.AuthRequested("PLAIN", b"\0alice\0pw")
BAD = smtp.AuthRequested("PLAIN", b"\0alice\0wrong")
LOGIN = smtp.AuthRequested("LOGIN", None)


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Context:
    """What AuthExchange reads from a ListenerContext."""

    users: FakeUsers | None = field(default_factory=lambda: FakeUsers({"alice": "pw"}))
    throttle: AuthThrottle | None = None
    monotonic: Clock = field(default_factory=Clock)


class Core:
    """Records the answers the exchange gives the protocol core, with their time."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, object]] = []
        self.at: list[float] = []

    def _record(self, kind: str, value: object) -> None:
        self.answers.append((kind, value))
        self.at.append(time.monotonic())

    def auth_failure(self, reply: Reply = smtp.AUTH_FAILED) -> None:
        self._record("failure", reply)

    def auth_challenge(self, challenge: bytes) -> None:
        self._record("challenge", challenge)

    def auth_success(self, username: str) -> None:
        self._record("success", username)


def exchange(ctx: Context) -> tuple[AuthExchange, Core]:
    core = Core()
    return AuthExchange(cast("ListenerContext", ctx), cast(smtp.ServerConnection, core)), core


def throttle(**kwargs: float) -> AuthThrottle:
    """A local AUTH throttle with short delays (the test waits them out)."""
    settings: dict[str, float] = {"first_delay": 0.05, "max_delay": 0.05, **kwargs}
    return AuthThrottle(**settings)  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_no_user_store_means_auth_is_temporarily_unavailable() -> None:
    t = throttle()
    auth, core = exchange(Context(users=None, throttle=t))
    await auth.start(GOOD, CLIENT)
    assert core.answers == [("failure", AUTH_UNAVAILABLE)]
    assert (AUTH_UNAVAILABLE.code, AUTH_UNAVAILABLE.enhanced) == (454, "4.7.0")
    assert len(t) == 0  # not an attempt


async def test_success_answers_the_user_and_forgets_earlier_failures() -> None:
    t = throttle(max_concurrent=1)
    users = FakeUsers({"alice": "pw"})
    ctx = Context(users=users, throttle=t)
    first, core = exchange(ctx)
    await first.start(BAD, CLIENT)
    assert t.delay_for(CLIENT, 100.0) > 0  # one failure on record
    second, core = exchange(ctx)
    await second.start(GOOD, CLIENT)
    assert core.answers == [("success", "alice")]
    assert t.delay_for(CLIENT, 100.0) == 0.0  # failures forgotten
    assert users.reloads == 2  # `outrider user add` applies without a restart
    # The attempt ended: the client's one concurrent slot is free again.
    third, core = exchange(ctx)
    await third.start(GOOD, CLIENT)
    assert core.answers == [("success", "alice")]


async def test_failure_is_counted_and_its_reply_held_for_the_throttle_delay() -> None:
    t = throttle(max_concurrent=1)
    auth, core = exchange(Context(throttle=t))
    started = time.monotonic()
    await auth.start(BAD, CLIENT)
    assert core.answers == [("failure", smtp.AUTH_FAILED)]
    assert core.at[0] - started >= 0.05
    assert t.delay_for(CLIENT, 100.0) == 0.05
    assert not t.is_blocked(CLIENT, 100.0)
    again, core = exchange(Context(throttle=t))
    await again.start(GOOD, CLIENT)  # not busy: the failed attempt was ended
    assert core.answers == [("success", "alice")]


async def test_failure_without_a_throttle_is_answered_at_once() -> None:
    auth, core = exchange(Context(throttle=None))
    started = time.monotonic()
    await auth.start(BAD, CLIENT)
    assert core.answers == [("failure", smtp.AUTH_FAILED)]
    assert core.at[0] - started < 0.5


async def test_enough_failures_block_the_client_until_the_block_ends() -> None:
    t = throttle(max_failures=2, block_time=60.0)
    ctx = Context(throttle=t)
    for _ in range(2):
        auth, core = exchange(ctx)
        await auth.start(BAD, CLIENT)
        assert core.answers == [("failure", smtp.AUTH_FAILED)]
    assert t.is_blocked(CLIENT, 100.0)
    blocked, core = exchange(ctx)
    await blocked.start(GOOD, CLIENT)  # right password, but blocked
    assert core.answers == [("failure", AUTH_BLOCKED)]
    assert (AUTH_BLOCKED.code, AUTH_BLOCKED.enhanced) == (454, "4.7.0")
    other, core = exchange(ctx)
    await other.start(GOOD, "192.0.2.8")
    assert core.answers == [("success", "alice")]
    ctx.monotonic.now = 100.0 + 60.0 + 1.0  # the listener's clock: the block is over
    later, core = exchange(ctx)
    await later.start(GOOD, CLIENT)
    assert core.answers == [("success", "alice")]


async def test_parallel_attempts_beyond_the_concurrent_limit_are_busy() -> None:
    t = throttle(max_concurrent=1)
    ctx = Context(throttle=t)
    first, core = exchange(ctx)
    await first.start(LOGIN, CLIENT)
    assert core.answers == [("challenge", b"Username:")]
    second, other = exchange(ctx)
    await second.start(GOOD, CLIENT)
    assert other.answers == [("failure", AUTH_BUSY)]
    assert (AUTH_BUSY.code, AUTH_BUSY.enhanced) == (454, "4.7.0")


async def test_challenges_are_stepped_to_success() -> None:
    auth, core = exchange(Context(throttle=throttle(max_concurrent=1)))
    await auth.start(LOGIN, CLIENT)
    await auth.step(b"alice")
    await auth.step(b"pw")
    assert core.answers == [
        ("challenge", b"Username:"),
        ("challenge", b"Password:"),
        ("success", "alice"),
    ]


async def test_a_cancelled_attempt_stays_counted_and_frees_its_slot() -> None:
    """A new AUTH after a cancelled one ("*") on the same session: the cancelled
    attempt no longer holds a slot, but it counts towards the failures that block."""
    t = throttle(max_concurrent=1, max_failures=2)
    auth, core = exchange(Context(throttle=t))
    await auth.start(LOGIN, CLIENT)
    await auth.start(BAD, CLIENT)
    assert core.answers == [("challenge", b"Username:"), ("failure", smtp.AUTH_FAILED)]
    assert t.is_blocked(CLIENT, 100.0)  # the cancelled attempt and the failure


async def test_abandoned_attempt_stays_counted_and_frees_its_slot() -> None:
    t = throttle(max_concurrent=1)
    ctx = Context(throttle=t)
    auth, core = exchange(ctx)
    await auth.start(LOGIN, CLIENT)
    auth.reset()  # the client hung up mid-exchange
    await settle()
    assert t.delay_for(CLIENT, 100.0) == 0.05  # counted: hanging up escapes nothing
    again, core = exchange(ctx)
    await again.start(GOOD, CLIENT)
    assert core.answers == [("success", "alice")]
    auth.reset()  # nothing in progress any more: nothing more to end
    await settle()
    assert t.delay_for(CLIENT, 100.0) == 0.0


async def test_reset_without_an_attempt_leaves_the_throttle_alone() -> None:
    t = throttle(max_concurrent=1)
    auth, _ = exchange(Context(throttle=t))
    auth.reset()
    await settle()
    assert len(t) == 0 and t.throttle.sizes() == {"counts": 0, "rates": 0, "events": 0, "blocks": 0}  # type: ignore[attr-defined]


class BrokenUsers(FakeUsers):
    def verify_password(self, username: str, password: str) -> bool:
        raise OSError("user store unreadable")


async def test_a_failing_mechanism_is_a_temporary_failure_and_ends_the_attempt() -> None:
    t = throttle(max_concurrent=1)
    auth, core = exchange(Context(users=BrokenUsers({}), throttle=t))
    await auth.start(GOOD, CLIENT)
    assert core.answers == [("failure", AUTH_UNAVAILABLE)]
    again, core = exchange(Context(throttle=t))
    await again.start(GOOD, CLIENT)  # the broken attempt does not hold the slot
    assert core.answers == [("success", "alice")]


async def test_outcomes_are_logged_with_client_user_and_mechanism(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="outrider.inbound")
    t = throttle(max_failures=2, max_concurrent=1)
    ctx = Context(throttle=t)
    for event in (GOOD, BAD, BAD, GOOD):
        auth, _ = exchange(ctx)
        await auth.start(event, CLIENT)
    assert caplog.messages == [
        f"auth: client={CLIENT} user=alice mechanism=PLAIN",
        f"auth failed: client={CLIENT} mechanism=PLAIN",
        f"auth failed: client={CLIENT} mechanism=PLAIN (client now blocked)",
        f"auth refused: client={CLIENT} is blocked",
    ]


async def test_failure_without_a_throttle_never_claims_a_block(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="outrider.inbound")
    auth, _ = exchange(Context(throttle=None))
    await auth.start(BAD, CLIENT)
    assert caplog.messages == [f"auth failed: client={CLIENT} mechanism=PLAIN"]


async def test_busy_refusal_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="outrider.inbound")
    ctx = Context(throttle=throttle(max_concurrent=1))
    first, _ = exchange(ctx)
    await first.start(LOGIN, CLIENT)
    second, _ = exchange(ctx)
    await second.start(GOOD, CLIENT)
    assert caplog.messages == [f"auth refused: client={CLIENT} is busy"]


async def test_a_failing_mechanism_is_logged_with_its_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth, _ = exchange(Context(users=BrokenUsers({})))
    await auth.start(GOOD, CLIENT)
    [record] = [r for r in caplog.records if r.name == "outrider.inbound"]
    assert record.getMessage() == "auth: mechanism PLAIN failed"
    assert record.exc_info is not None


async def test_an_ended_attempt_is_ended_only_once() -> None:
    """A session that failed once and tries again must not free a slot it no longer
    holds: the slot is another session's (same client) in progress."""
    t = throttle(max_concurrent=1)
    ctx = Context(throttle=t)
    retrying, core = exchange(ctx)
    await retrying.start(BAD, CLIENT)
    other, _ = exchange(ctx)
    await other.start(LOGIN, CLIENT)  # holds the client's one slot
    await retrying.start(GOOD, CLIENT)
    retrying.reset()
    await settle()
    assert core.answers == [("failure", smtp.AUTH_FAILED), ("failure", AUTH_BUSY)]
    third, core = exchange(ctx)
    await third.start(GOOD, CLIENT)
    assert core.answers == [("failure", AUTH_BUSY)]  # still held by `other`


async def test_unknown_mechanism_is_refused_and_ends_the_attempt() -> None:
    t = throttle(max_concurrent=1)
    auth, core = exchange(Context(throttle=t))
    await auth.start(smtp.AuthRequested("NOPE", None), CLIENT)
    assert core.answers == [("failure", smtp.AUTH_UNKNOWN_MECHANISM)]
    again, core = exchange(Context(throttle=t))
    await again.start(GOOD, CLIENT)
    assert core.answers == [("success", "alice")]


async def test_a_response_without_a_mechanism_in_progress_is_a_temporary_failure() -> None:
    auth, core = exchange(Context())
    await auth.step(b"alice")
    assert core.answers == [("failure", AUTH_UNAVAILABLE)]
