"""The audit after the run: what the clients were promised against what the sinks and
the accounting log saw. Pure functions over the collected evidence; no I/O.

Keys: every recipient address is unique to its message (see ``plan``), so a
(message, recipient) pair is just its address.

- **Messages checked**: every message answered 250 (``accepted``), plus every message
  whose reply was lost in a kill (``unknown``) but that reached a sink or the accounting
  log anyway (``accepted-but-unknown``): once it was stored, it owes the same outcome.
- **Outcome** (from the sinks, the ground truth): a recipient that should be delivered
  was received by its sink at least once; one that should bounce is listed as
  ``Action: failed`` in a DSN received by the sender domain's sink. Neither: ``lost``.
- **Accounting**: per recipient the ``d`` (delivered) and ``b`` (bounced) rows count;
  ``t`` rows (deferrals) and ``q`` rows are not outcomes and are only tallied. A DSN's
  own delivery is its ``d`` row (sender ``<>``, recipient the original sender). Exactly
  one outcome row is expected.
- **Explained by a kill**: a second copy at a sink is expected when the first arrived
  within ``window`` seconds before a kill (the daemon had not yet recorded it), or when
  the client never sent another command after our 250 and a kill came before the next
  copy (it may never have read the reply). A second outcome row is explained when it
  matches such an explained second attempt. A missing row is never explained: the
  daemon hands each row to the OS before the spool records its outcome, so kill -9
  cannot lose it; the audit only says whether a kill came soon after the outcome.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from soak.clients import Attempt
from soak.plan import expected_outcome, is_deferred_domain, uid_in, uid_of_sender
from soak.sinks import Receipt, Refusal


@dataclass(frozen=True)
class Evidence:
    attempts: Sequence[Attempt]
    receipts: Sequence[Receipt]
    acknowledged: set[int]  # receipt indexes whose 250 the client answered with a command
    refusals: Sequence[Refusal]
    rows: Sequence[Mapping[str, str]]  # accounting log rows (csv.DictReader)
    kills: Sequence[float]
    window: float


@dataclass
class Audit:
    accepted: Counter[str] = field(default_factory=Counter)  # by channel
    unknown: int = 0  # reply lost, never seen anywhere
    accepted_but_unknown: int = 0
    refused: int = 0
    recipients: int = 0
    delivered: int = 0
    bounced: int = 0
    deferred_then_delivered: int = 0
    dsns: int = 0
    duplicates: Counter[str] = field(default_factory=Counter)  # explanation -> extra copies
    lost: list[str] = field(default_factory=list)
    lost_queue_ids: list[str] = field(default_factory=list)  # to look up in the daemon log
    problems: list[str] = field(default_factory=list)  # anything else that fails the run
    rows: Counter[str] = field(default_factory=Counter)  # accounting rows by type
    exactly_once: int = 0  # outcomes with exactly one accounting row
    missing_rows: Counter[str] = field(default_factory=Counter)  # explanation -> count
    double_rows: Counter[str] = field(default_factory=Counter)  # explanation -> extra rows
    examples: dict[str, list[str]] = field(default_factory=dict)  # category -> a few cases

    UNEXPLAINED = "unexplained"

    @property
    def checked(self) -> int:
        return sum(self.accepted.values()) + self.accepted_but_unknown

    @property
    def failed(self) -> bool:
        return bool(
            self.lost
            or self.problems
            or self.duplicates[self.UNEXPLAINED]
            or sum(self.missing_rows.values())
            or self.double_rows[self.UNEXPLAINED]
        )

    def note(self, category: str, case: str) -> None:
        cases = self.examples.setdefault(category, [])
        if len(cases) < 10:
            cases.append(case)


def audit(ev: Evidence) -> Audit:
    result = Audit()
    attempts = {a.uid: a for a in ev.attempts}
    kills = sorted(ev.kills)

    copies: dict[str, list[Receipt]] = defaultdict(list)  # rcpt -> non-DSN receipts
    dsn_copies: dict[str, dict[str, list[Receipt]]] = defaultdict(lambda: defaultdict(list))
    seen: set[str] = set()  # uids that reached any sink or the accounting log
    for receipt in sorted(ev.receipts, key=lambda r: r.at):
        if receipt.dsn is None:
            uid = uid_in(receipt.message_id) or uid_of_sender(receipt.mail_from)
            for rcpt in receipt.rcpts:
                copies[rcpt.lower()].append(receipt)
        else:
            uid = receipt.dsn.original_uid
            if uid is not None:
                dsn_copies[uid][receipt.message_id].append(receipt)
        if uid is None or uid not in attempts:
            result.problems.append(f"a sink took a message nobody sent: {receipt}")
            continue
        seen.add(uid)

    outcome_rows: dict[str, list[Mapping[str, str]]] = defaultdict(list)
    dsn_rows: dict[str, list[Mapping[str, str]]] = defaultdict(list)
    for row in ev.rows:
        kind = row.get("type", "")
        result.rows[kind] += 1
        if kind not in ("d", "b"):
            continue
        rcpt = row["rcpt"].lower()
        if row["orig"] == "":
            uid = uid_of_sender(rcpt)
            if uid is not None:
                dsn_rows[uid].append(row)
                continue
        else:
            uid = uid_in(row["msgId"])
            outcome_rows[rcpt].append(row)
        if uid is None or uid not in attempts:
            result.problems.append(f"an accounting row for a message nobody sent: {dict(row)}")
        else:
            seen.add(uid)

    refusals: dict[str, list[Refusal]] = defaultdict(list)
    for refusal in sorted(ev.refusals, key=lambda r: r.at):
        refusals[refusal.rcpt].append(refusal)

    for attempt in ev.attempts:
        if attempt.state == "accepted":
            result.accepted[attempt.channel] += 1
        elif attempt.state == "unknown" and attempt.uid in seen:
            result.accepted_but_unknown += 1
        else:
            if attempt.state == "unknown":
                result.unknown += 1
            else:
                result.refused += 1
            if attempt.uid in seen:
                result.problems.append(
                    f"{attempt.uid}: refused ({attempt.reply}) but reached a sink or the log"
                )
            continue
        dsns = dsn_copies.get(attempt.uid, {})
        _check_message(result, attempt, copies, dsns, refusals, ev, kills)
        _check_rows(result, attempt, copies, outcome_rows, refusals, ev, kills)
        _check_dsn_rows(result, attempt, dsns, dsn_rows, ev, kills)
    return result


def _check_message(
    result: Audit,
    attempt: Attempt,
    copies: Mapping[str, list[Receipt]],
    dsns: Mapping[str, list[Receipt]],
    refusals: Mapping[str, list[Refusal]],
    ev: Evidence,
    kills: Sequence[float],
) -> None:
    failed = {
        rcpt
        for receipts in dsns.values()
        for r in receipts[:1]
        if r.dsn is not None
        for rcpt, action in r.dsn.actions
        if action == "failed"
    }
    for rcpt in attempt.rcpts:
        result.recipients += 1
        key = rcpt.lower()
        got = copies.get(key, [])
        if expected_outcome(rcpt) == "delivered":
            if got:
                result.delivered += 1
                if is_deferred_domain(rcpt) and any(
                    r.reply.startswith("4") and r.at < got[0].at for r in refusals.get(key, [])
                ):
                    result.deferred_then_delivered += 1
            elif key in failed:
                result.problems.append(f"{attempt.uid}: {rcpt} bounced, should be delivered")
            else:
                result.lost.append(f"{attempt.uid} {rcpt} (queue id {attempt.queue_id})")
                result.lost_queue_ids.append(attempt.queue_id)
        elif key in failed:
            result.bounced += 1
            if got:
                result.problems.append(f"{attempt.uid}: {rcpt} bounced and delivered")
        elif got:
            result.problems.append(f"{attempt.uid}: {rcpt} delivered, should bounce")
        else:
            result.lost.append(f"{attempt.uid} {rcpt}: no DSN (queue id {attempt.queue_id})")
            result.lost_queue_ids.append(attempt.queue_id)
        _count_duplicates(result, f"{attempt.uid} {rcpt}", got, ev, kills)

    unexpected = failed - {r.lower() for r in attempt.rcpts if expected_outcome(r) == "bounced"}
    if unexpected:
        result.problems.append(f"{attempt.uid}: a DSN names {sorted(unexpected)}")
    if len(dsns) > 1:
        result.problems.append(f"{attempt.uid}: {len(dsns)} different DSNs: {sorted(dsns)}")
    for message_id, receipts in dsns.items():
        result.dsns += 1
        _count_duplicates(result, f"{attempt.uid} DSN {message_id}", receipts, ev, kills)


def _count_duplicates(
    result: Audit, what: str, got: Sequence[Receipt], ev: Evidence, kills: Sequence[float]
) -> None:
    for (earlier, later), why in zip(itertools.pairwise(got), repeats(got, ev, kills), strict=True):
        result.duplicates[why] += 1
        near = _near(kills, earlier.at)
        result.note(
            f"duplicate ({why})",
            f"{what}: copies at {earlier.at:.3f} and {later.at:.3f}; kills {near}",
        )


def repeats(got: Sequence[Receipt], ev: Evidence, kills: Sequence[float]) -> list[str]:
    """For each copy but the last, why it was followed by another (see ``explain_copy``)."""
    return [
        explain_copy(earlier, later.at, ev.acknowledged, kills, ev.window)
        for earlier, later in itertools.pairwise(got)
    ]


def explain_copy(
    receipt: Receipt, next_at: float, acknowledged: set[int], kills: Sequence[float], window: float
) -> str:
    """Why a message that a sink took was sent again; ``Audit.UNEXPLAINED`` if no kill fits."""
    if any(receipt.at <= k <= receipt.at + window for k in kills):
        return "in flight at a kill"
    if receipt.index not in acknowledged and any(receipt.at <= k <= next_at for k in kills):
        return "250 not read before a kill"
    return Audit.UNEXPLAINED


def _check_rows(
    result: Audit,
    attempt: Attempt,
    copies: Mapping[str, list[Receipt]],
    outcome_rows: Mapping[str, list[Mapping[str, str]]],
    refusals: Mapping[str, list[Refusal]],
    ev: Evidence,
    kills: Sequence[float],
) -> None:
    for rcpt in attempt.rcpts:
        key = rcpt.lower()
        rows = outcome_rows.get(key, [])
        want = "d" if expected_outcome(rcpt) == "delivered" else "b"
        wrong = [r for r in rows if r["type"] != want]
        if wrong:
            result.problems.append(f"{attempt.uid} {rcpt}: row type {wrong[0]['type']}, not {want}")
        if want == "d":
            attempts_at = [r.at for r in copies.get(key, [])]
            explained = [w != Audit.UNEXPLAINED for w in repeats(copies.get(key, []), ev, kills)]
        else:
            attempts_at = [r.at for r in refusals.get(key, []) if r.reply.startswith("5")]
            explained = [any(t <= k <= t + ev.window for k in kills) for t in attempts_at[:-1]]
        _judge_rows(result, f"{attempt.uid} {rcpt}", len(rows), attempts_at, explained, ev, kills)


def _check_dsn_rows(
    result: Audit,
    attempt: Attempt,
    dsns: Mapping[str, list[Receipt]],
    dsn_rows: Mapping[str, list[Mapping[str, str]]],
    ev: Evidence,
    kills: Sequence[float],
) -> None:
    rows = dsn_rows.get(attempt.uid, [])
    if not dsns and not rows:
        return
    got = [r for receipts in dsns.values() for r in receipts]
    explained = [w != Audit.UNEXPLAINED for w in repeats(got, ev, kills)]
    _judge_rows(result, f"{attempt.uid} DSN", len(rows), [r.at for r in got], explained, ev, kills)


def _judge_rows(
    result: Audit,
    what: str,
    count: int,
    attempts_at: Sequence[float],
    explained: Sequence[bool],
    ev: Evidence,
    kills: Sequence[float],
) -> None:
    """One outcome row per outcome; a missing or extra one must be explained by a kill."""
    if count == 1:
        result.exactly_once += 1
    elif count == 0:
        last = attempts_at[-1] if attempts_at else None
        why = (
            "a kill soon after the outcome"
            if last is not None and any(last <= k <= last + ev.window for k in kills)
            else "no kill near the outcome"
        )
        result.missing_rows[why] += 1
        result.note(
            f"missing row ({why})", f"{what}: outcome at {last}; kills {_near(kills, last)}"
        )
    else:
        extra = count - 1
        fits = extra <= len(explained) and all(explained[:extra])
        why = "matches a repeated attempt at a kill" if fits else Audit.UNEXPLAINED
        result.double_rows[why] += extra
        result.note(f"double row ({why})", f"{what}: {count} rows, attempts at {attempts_at}")


def _near(kills: Sequence[float], at: float | None) -> str:
    if at is None:
        return "-"
    close = [f"{k - at:+.2f}s" for k in kills if abs(k - at) < 30]
    return ", ".join(close) or "none within 30 s"
