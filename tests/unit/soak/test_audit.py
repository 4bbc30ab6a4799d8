"""The soak audit (bench/soak/audit.py): it must catch what the soak exists to catch.

Lost mail, a duplicate no kill explains, a missing or extra accounting row, a refused
message that was delivered all fail the audit; a repeat that a kill explains does not.
"""

from __future__ import annotations

from collections.abc import Sequence

from soak.audit import Audit, Evidence, audit
from soak.clients import Attempt, State
from soak.sinks import DsnReport, Receipt, Refusal

T = 1_800_000_000.0
OK = "u1@ok.test"
HARD = "hard-u1@bounce.test"
SENDER = "u1@senders.test"
MSGID = "<soak.u1@client.soak.test>"


def attempt(*rcpts: str, state: State = "accepted") -> Attempt:
    return Attempt("u1", "relay", "ok", SENDER, rcpts, state, "250 OK", "Q1", T)


def copy(index: int, at: float, rcpt: str = OK) -> Receipt:
    return Receipt(index, "ok", SENDER, (rcpt,), MSGID, at, index, None)


def row(kind: str, rcpt: str = OK, orig: str = SENDER, msg_id: str = MSGID) -> dict[str, str]:
    return {"type": kind, "rcpt": rcpt, "orig": orig, "msgId": msg_id}


def run(
    attempts: list[Attempt],
    receipts: list[Receipt],
    rows: list[dict[str, str]],
    kills: Sequence[float] = (),
    refusals: Sequence[Refusal] = (),
    acknowledged: set[int] | None = None,
) -> Audit:
    acked = {r.index for r in receipts} if acknowledged is None else acknowledged
    return audit(Evidence(attempts, receipts, acked, refusals, rows, kills, window=2.0))


def test_a_clean_delivery_passes() -> None:
    result = run([attempt(OK)], [copy(0, T + 1)], [row("d")])
    assert (result.delivered, result.exactly_once, result.failed) == (1, 1, False)


def test_an_accepted_message_that_never_arrives_is_lost() -> None:
    result = run([attempt(OK)], [], [])
    assert result.lost and result.failed


def test_a_copy_in_flight_at_a_kill_explains_the_duplicate_and_its_second_row() -> None:
    result = run(
        [attempt(OK)], [copy(0, T + 1), copy(1, T + 5)], [row("d"), row("d")], kills=[T + 1.5]
    )
    assert result.duplicates == {"in flight at a kill": 1}
    assert result.double_rows == {"matches a repeated attempt at a kill": 1}
    assert not result.failed


def test_a_reply_the_daemon_never_read_explains_a_later_copy() -> None:
    result = run(
        [attempt(OK)],
        [copy(0, T + 1), copy(1, T + 9)],
        [row("d")],
        kills=[T + 6],
        acknowledged=set(),
    )
    assert result.duplicates == {"250 not read before a kill": 1} and not result.failed


def test_a_duplicate_without_a_kill_fails() -> None:
    result = run([attempt(OK)], [copy(0, T + 1), copy(1, T + 5)], [row("d")])
    assert result.duplicates == {Audit.UNEXPLAINED: 1} and result.failed


def test_a_second_row_without_a_second_delivery_fails() -> None:
    result = run([attempt(OK)], [copy(0, T + 1)], [row("d"), row("d")], kills=[T + 1.5])
    assert result.double_rows == {Audit.UNEXPLAINED: 1} and result.failed


def test_a_missing_row_fails_even_right_before_a_kill() -> None:
    result = run([attempt(OK)], [copy(0, T + 1)], [], kills=[T + 1.2])
    assert result.missing_rows == {"a kill soon after the outcome": 1} and result.failed


def test_a_bounce_is_a_dsn_at_the_senders_sink_with_a_b_row_and_the_dsn_delivered() -> None:
    dsn = Receipt(
        0,
        "dsn",
        "",
        (SENDER,),
        "<Q1-F@mta.soak.test>",
        T + 2,
        0,
        DsnReport("u1", "Q1", ((HARD, "failed"),)),
    )
    refusal = Refusal("bounce", HARD, "550 5.1.1 no such user", T + 1)
    rows = [row("b", HARD), row("d", SENDER, orig="", msg_id="<Q1-F@mta.soak.test>")]
    result = run([attempt(HARD)], [dsn], rows, refusals=[refusal])
    assert (result.bounced, result.dsns, result.exactly_once, result.failed) == (1, 1, 2, False)


def test_a_bounce_without_a_dsn_is_lost() -> None:
    refusal = Refusal("bounce", HARD, "550 5.1.1 no such user", T + 1)
    result = run([attempt(HARD)], [], [row("b", HARD)], refusals=[refusal])
    assert result.lost and result.failed


def test_a_delivery_to_an_address_that_must_bounce_fails() -> None:
    result = run([attempt(HARD)], [copy(0, T + 1, HARD)], [row("b", HARD)])
    assert result.problems and result.failed


def test_a_refused_message_must_not_be_delivered() -> None:
    result = run([attempt(OK, state="refused")], [copy(0, T + 1)], [row("d")])
    assert result.problems and result.failed


def test_a_stored_message_whose_reply_was_lost_is_checked_like_an_accepted_one() -> None:
    result = run([attempt(OK, state="unknown")], [copy(0, T + 1)], [row("d")])
    assert (result.accepted_but_unknown, result.delivered, result.failed) == (1, 1, False)
    unseen = run([attempt(OK, state="unknown")], [], [])
    assert (unseen.unknown, unseen.lost, unseen.failed) == (1, [], False)


def test_a_greylisted_recipient_delivered_after_a_451_counts_as_deferred_then_delivered() -> None:
    rcpt = "u1@defer.test"
    refusal = Refusal("defer", rcpt, "451 4.7.1 Greylisted", T + 1)
    result = run([attempt(rcpt)], [copy(0, T + 30, rcpt)], [row("d", rcpt)], refusals=[refusal])
    assert (result.deferred_then_delivered, result.failed) == (1, False)
