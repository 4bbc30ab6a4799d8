from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outrider.policy.outcome import Outcome, Scope, Verdict, classify_reply, status_from_text
from outrider.policy.patterns import (
    PHASES,
    Action,
    Match,
    classify_with_patterns,
    match_reply,
)
from outrider.smtp.replies import Reply


@dataclass(frozen=True)
class Rule:
    regex: re.Pattern[str]
    action: str
    phase: str = "any"


def rule(pattern: str, action: str, phase: str = "any") -> Rule:
    return Rule(re.compile(pattern, re.IGNORECASE), action, phase)


GMAIL_RATE = "421 4.7.28 Our system has detected an unusual rate of unsolicited mail"
RULES = [
    rule(r"unusual rate", "mode=backoff"),
    rule(r"4\.7\.28", "mode=backoff"),
    rule(r"spamhaus|blocked using", "disable-source-ip", "rcpt"),
    rule(r"^421 .*rate", "bounce"),
    rule(r"mailbox full", "defer"),
    rule(r"welcome back", "mode=normal", "greeting"),
]


def test_all_actions_in_rule_order_one_per_action() -> None:
    matches = match_reply(RULES, GMAIL_RATE, "rcpt")
    assert [m.action for m in matches] == [Action.BACKOFF, Action.BOUNCE]
    assert matches[0] == Match(Action.BACKOFF, "unusual rate", GMAIL_RATE)


def test_phase_restricts_rules() -> None:
    reply = "554 5.7.1 Service unavailable; blocked using zen.spamhaus.org"
    assert [m.action for m in match_reply(RULES, reply, "rcpt")] == [Action.DISABLE_SOURCE_IP]
    assert match_reply(RULES, reply, "mail") == []
    assert [m.action for m in match_reply(RULES, "220 welcome back", "greeting")] == [Action.NORMAL]
    assert match_reply(RULES, "220 welcome back", "ehlo") == []


def test_no_match() -> None:
    assert match_reply(RULES, "250 2.0.0 OK", "data-end") == []
    assert match_reply([], GMAIL_RATE, "rcpt") == []


def test_unknown_action_is_an_error() -> None:
    with pytest.raises(ValueError):
        match_reply([rule("x", "explode")], "x", "rcpt")


def test_action_values_are_config_spellings() -> None:
    assert {a.value for a in Action} == {
        "mode=backoff",
        "mode=normal",
        "disable-source-ip",
        "bounce",
        "defer",
    }
    assert "data-end" in PHASES


def outcome_of(reply: Reply) -> Outcome:
    return classify_reply(reply, scope=Scope.RECIPIENT, remote_mta="mx.example")


def test_bounce_makes_transient_permanent() -> None:
    o = outcome_of(Reply(421, "4.7.28", "rate limited"))
    out = classify_with_patterns(o, [Match(Action.BOUNCE, "rate", o.diagnostic)])
    assert out.verdict is Verdict.PERMANENT
    assert out.status == "5.7.28"
    assert out.diagnostic == "550 5.7.28 rate limited"
    assert out.scope is Scope.RECIPIENT
    assert out.remote_mta == "mx.example"


def test_defer_makes_permanent_transient() -> None:
    o = outcome_of(Reply(552, "5.2.2", "mailbox full"))
    out = classify_with_patterns(o, [Match(Action.DEFER, "full", o.diagnostic)])
    assert out.verdict is Verdict.TRANSIENT
    assert out.status == "4.2.2"
    assert out.diagnostic == "451 4.2.2 mailbox full"


def test_reply_without_enhanced_status() -> None:
    o = outcome_of(Reply(450, "", "try later"))
    out = classify_with_patterns(o, [Match(Action.BOUNCE, "later", o.diagnostic)])
    assert (out.status, out.diagnostic) == ("5.0.0", "550 5.0.0 try later")


def test_diagnostic_without_a_code_is_kept_whole() -> None:
    o = Outcome(Verdict.TRANSIENT, Scope.SITE, "4.4.1", "connection refused")
    out = classify_with_patterns(o, [Match(Action.BOUNCE, "refused", o.diagnostic)])
    assert out.diagnostic == "550 5.4.1 connection refused"


def test_a_reply_with_no_text_gets_no_trailing_blank() -> None:
    o = Outcome(Verdict.TRANSIENT, Scope.RECIPIENT, "4.7.1", "451 4.7.1")
    out = classify_with_patterns(o, [Match(Action.BOUNCE, "4.7.1", o.diagnostic)])
    assert out.diagnostic == "550 5.7.1"


@pytest.mark.parametrize("status", ["", "4.7", "unknown"])
def test_an_unusable_status_becomes_the_class_default(status: str) -> None:
    o = Outcome(Verdict.TRANSIENT, Scope.RECIPIENT, status, "451 rate limited")
    out = classify_with_patterns(o, [Match(Action.BOUNCE, "rate", o.diagnostic)])
    assert (out.status, out.diagnostic) == ("5.0.0", "550 5.0.0 rate limited")


@pytest.mark.parametrize(
    ("reply", "action"),
    [
        (Reply(550, "5.1.1", "no such user"), Action.BOUNCE),
        (Reply(451, "4.3.0", "later"), Action.DEFER),
        (Reply(250, "2.0.0", "ok"), Action.BOUNCE),
        (Reply(250, "2.0.0", "ok"), Action.DEFER),
        (Reply(421, "4.7.0", "slow down"), Action.BACKOFF),
        (Reply(550, "5.7.1", "blocked"), Action.DISABLE_SOURCE_IP),
    ],
)
def test_other_combinations_leave_the_outcome(reply: Reply, action: Action) -> None:
    o = outcome_of(reply)
    assert classify_with_patterns(o, [Match(action, "x", o.diagnostic)]) is o


def test_first_of_bounce_and_defer_wins() -> None:
    o = outcome_of(Reply(421, "4.7.0", "x"))
    both = [
        Match(Action.BACKOFF, "x", o.diagnostic),
        Match(Action.DEFER, "x", o.diagnostic),
        Match(Action.BOUNCE, "x", o.diagnostic),
    ]
    assert classify_with_patterns(o, both) is o


@given(
    code=st.integers(400, 599),
    sub=st.integers(0, 999),
    detail=st.integers(0, 999),
    text=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)
def test_reclassified_status_is_recoverable_from_the_diagnostic(
    code: int, sub: int, detail: int, text: str
) -> None:
    """Later DSNs read the status back from the stored diagnostic; it must say the new class."""
    o = outcome_of(Reply(code, f"{str(code)[0]}.{sub}.{detail}", text))
    action = Action.BOUNCE if o.verdict is Verdict.TRANSIENT else Action.DEFER
    out = classify_with_patterns(o, [Match(action, "", o.diagnostic)])
    assert out.verdict is not o.verdict
    assert out.status[0] == ("5" if action is Action.BOUNCE else "4")
    assert out.status[1:] == o.status[1:]
    assert status_from_text(out.diagnostic, "x") == out.status
    assert out.diagnostic.startswith("550 " if action is Action.BOUNCE else "451 ")
