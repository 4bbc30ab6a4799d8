"""Reply patterns (PowerMTA ``smtp-pattern-list``): match a remote reply against rules.

Matching returns every action that applies, so one reply can both put the queue in
backoff and bounce the recipient; the first matching rule per action wins, which keeps
the rule that is logged predictable when several overlap.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

from outrider.policy.outcome import Outcome, Verdict

__all__ = [
    "PHASES",
    "Action",
    "Match",
    "RuleLike",
    "classify_with_patterns",
    "match_reply",
]

# Protocol phases a rule may be limited to; "any" matches all of them.
PHASES = frozenset({"connect", "greeting", "ehlo", "starttls", "mail", "rcpt", "data", "data-end"})
ANY_PHASE = "any"


class Action(Enum):
    BACKOFF = "mode=backoff"
    NORMAL = "mode=normal"
    DISABLE_SOURCE_IP = "disable-source-ip"
    BOUNCE = "bounce"
    DEFER = "defer"


class RuleLike(Protocol):
    """One pattern rule (the config's rule type qualifies)."""

    @property
    def regex(self) -> re.Pattern[str]: ...
    @property
    def action(self) -> str | Action: ...
    @property
    def phase(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Match:
    action: Action
    rule: str  # regex source, for the log
    reply: str  # the reply text as received, verbatim


def match_reply(rules: Sequence[RuleLike], reply_text: str, phase: str) -> list[Match]:
    """All actions whose rules match ``reply_text`` in ``phase``, in rule order, one per action.

    A rule matches if its regex is found anywhere in the reply (``re.search``); anchor it
    to match the start. Unknown action strings raise ``ValueError`` (config validates them).
    """
    matches: list[Match] = []
    seen: set[Action] = set()
    for rule in rules:
        rule_phase = rule.phase
        if rule_phase != ANY_PHASE and rule_phase != phase:
            continue
        action = Action(rule.action)
        if action in seen:
            continue
        if rule.regex.search(reply_text) is not None:
            seen.add(action)
            matches.append(Match(action, rule.regex.pattern, reply_text))
    return matches


# The reply code and enhanced status that lead a diagnostic such as "421 4.7.28 text".
_LEADING = re.compile(r"[2-5]\d\d(?:[ -][245]\.\d{1,3}\.\d{1,3})?(?=\s|$)\s*")
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


def _reclass(outcome: Outcome, verdict: Verdict, code: str) -> Outcome:
    """``outcome`` with class ``code[0]``: status 4.7.1 -> 5.7.1, diagnostic led by ``code``.

    The diagnostic is what later DSNs re-derive the status from, so its leading code and
    status are rewritten; the verbatim reply stays in :attr:`Match.reply` for the log.
    """
    klass = code[0]
    status = klass + outcome.status[1:] if _STATUS.fullmatch(outcome.status) else f"{klass}.0.0"
    leading = _LEADING.match(outcome.diagnostic)
    rest = outcome.diagnostic[leading.end() :] if leading else outcome.diagnostic
    diagnostic = f"{code} {status} {rest}" if rest else f"{code} {status}"
    return replace(outcome, verdict=verdict, status=status, diagnostic=diagnostic)


def classify_with_patterns(outcome: Outcome, matches: Sequence[Match]) -> Outcome:
    """Apply the first ``bounce`` or ``defer`` match to ``outcome``.

    ``bounce`` makes a transient failure permanent (class 5, code 550); ``defer`` makes a
    permanent failure transient (class 4, code 451). Deliveries, outcomes already of the
    requested kind, and the other actions leave it unchanged.
    """
    for match in matches:
        if match.action is Action.BOUNCE:
            if outcome.verdict is Verdict.TRANSIENT:
                return _reclass(outcome, Verdict.PERMANENT, "550")
            return outcome
        if match.action is Action.DEFER:
            if outcome.verdict is Verdict.PERMANENT:
                return _reclass(outcome, Verdict.TRANSIENT, "451")
            return outcome
    return outcome
