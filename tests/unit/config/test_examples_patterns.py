"""The shipped provider pattern list loads and matches the replies it is written for."""

from __future__ import annotations

from pathlib import Path

import pytest

from outrider.config.loader import parse_config
from outrider.policy.patterns import Action, match_reply

ROOT = Path(__file__).resolve().parents[3]
BASE = '[[listener]]\naddress = "127.0.0.1:2525"\n'


def rules() -> tuple[object, ...]:
    text = (ROOT / "examples" / "smtp-patterns.toml").read_text()
    config = parse_config(BASE + text, "smtp-patterns.toml")
    assert config.policy_for("gmail.com").smtp_pattern_list == "provider-throttling"
    return tuple(config.pattern_lists["provider-throttling"])


@pytest.mark.parametrize(
    ("reply", "action"),
    [
        ("421 4.7.28 Our system has detected an unusual rate of unsolicited mail", Action.BACKOFF),
        ("421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred", Action.BACKOFF),
        (
            "553 5.7.1 [TS03] All messages from 192.0.2.1 will be permanently deferred",
            Action.DISABLE_SOURCE_IP,
        ),
        (
            "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. (S3150)",
            Action.DISABLE_SOURCE_IP,
        ),
        (
            "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited",
            Action.BACKOFF,
        ),
        ("421 4.3.2 Too many connections from your IP", Action.BACKOFF),
    ],
)
def test_provider_replies_match(reply: str, action: Action) -> None:
    actions = [m.action for m in match_reply(rules(), reply, "rcpt")]  # type: ignore[arg-type]
    assert action in actions


def test_ordinary_replies_do_not_match() -> None:
    for reply in ("550 5.1.1 No such user", "452 4.2.2 Mailbox full", "250 2.0.0 OK"):
        assert match_reply(rules(), reply, "rcpt") == []  # type: ignore[arg-type]
