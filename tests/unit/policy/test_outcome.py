from __future__ import annotations

import re

import pytest

from outrider.policy.outcome import (
    Scope,
    Verdict,
    classify_reply,
    local_outcome,
    status_from_text,
    status_of,
    verdict_of,
)
from outrider.smtp.replies import Reply


@pytest.mark.parametrize(
    ("reply", "verdict", "status"),
    [
        (Reply(250, "2.0.0", "ok"), Verdict.DELIVERED, "2.0.0"),
        (Reply(250, "", "ok"), Verdict.DELIVERED, "2.0.0"),
        (Reply(451, "4.7.1", "later"), Verdict.TRANSIENT, "4.7.1"),
        (Reply(421, "", "busy"), Verdict.TRANSIENT, "4.0.0"),
        (Reply(550, "5.1.1", "no user"), Verdict.PERMANENT, "5.1.1"),
        (Reply(554, "", "no"), Verdict.PERMANENT, "5.0.0"),
        # An enhanced code whose class contradicts the basic code is not trusted.
        (Reply(550, "4.2.2", "odd"), Verdict.PERMANENT, "5.0.0"),
    ],
)
def test_classify_reply(reply: Reply, verdict: Verdict, status: str) -> None:
    outcome = classify_reply(reply, scope=Scope.RECIPIENT, remote_mta="mx.test")
    assert outcome.verdict is verdict
    assert outcome.status == status == status_of(reply)
    assert outcome.remote_mta == "mx.test"
    assert outcome.diagnostic == str(reply)


def test_a_reply_classified_without_a_remote_host_names_none() -> None:
    # e.g. the synthesized reply for an MX that refuses mail: no Remote-MTA in the DSN
    assert classify_reply(Reply(550, "5.7.1", "no"), scope=Scope.SITE).remote_mta == ""


def test_local_outcome_has_no_remote_mta() -> None:
    o = local_outcome(556, "5.1.10", "null MX")
    assert (o.verdict, o.scope, o.remote_mta) == (Verdict.PERMANENT, Scope.SITE, "")
    assert o.status == "5.1.10"
    assert o.diagnostic == "556 5.1.10 null MX"
    assert local_outcome(451, "4.4.3", "no DNS", scope=Scope.DOMAIN).scope is Scope.DOMAIN


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (299, Verdict.DELIVERED),
        (400, Verdict.TRANSIENT),
        (499, Verdict.TRANSIENT),
        (500, Verdict.PERMANENT),
        (599, Verdict.PERMANENT),
    ],
)
def test_verdict_follows_the_reply_class_at_its_edges(code: int, verdict: Verdict) -> None:
    assert verdict_of(code) is verdict


@pytest.mark.parametrize("code", [300, 354, 399])
def test_an_intermediate_reply_is_never_a_delivery(code: int) -> None:
    """A 3xx where a final reply belongs (a broken server) must not settle as delivered."""
    assert verdict_of(code) is not Verdict.DELIVERED
    # and its status is still a well-formed enhanced status code
    assert re.fullmatch(r"[245]\.\d+\.\d+", status_of(Reply(code, "", "go ahead")))


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("550 5.1.1 no such user", "5.1.1"),
        ("556 5.1.10 null MX", "5.1.10"),
        ("451 try later", "9.9.9"),
        ("", "9.9.9"),
    ],
)
def test_status_from_text(text: str, status: str) -> None:
    assert status_from_text(text, "9.9.9") == status


def test_expired_status_is_4_4_7_for_a_temporary_last_reply() -> None:
    """RFC 3463: X.4.7 "delivery time expired" is a persistent transient (class 4) code."""
    from outrider.policy.outcome import EXPIRED_STATUS, expired_status

    assert EXPIRED_STATUS == "4.4.7"
    assert expired_status("4.2.2") == "4.4.7"
    assert expired_status("4.4.1") == "4.4.7"
    assert expired_status("5.1.1") == "5.1.1"
