"""The intake's List-Unsubscribe step: when the fields are added, what they hold."""

from __future__ import annotations

import email
import email.policy
import os
import stat
from pathlib import Path

import pytest

from outrider.config.model import UnsubscribeSettings
from outrider.intake.submission import Submission
from outrider.message.envelope import Envelope, Recipient, Source
from outrider.spool.spill import SpilledBody
from outrider.unsubscribe.step import (
    UnsubscribeStep,
    insert_after_first_field,
    step_from_config,
    take_request,
    wanted,
)
from outrider.unsubscribe.token import read_token, today

SECRET = b"k" * 32
NOW = 1_780_000_000.0
MESSAGE = (
    b"Received: from x by mx.test; Thu, 1 Jan 2026 00:00:00 +0000\r\n"
    b"From: news@news.example.com\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"body\r\n"
)
STEP = UnsubscribeStep(
    secret=SECRET,
    url="https://news.example.com/unsubscribe/",
    mailto="unsubscribe@bounce.example.com",
    sender_domains=frozenset({"news.example.com"}),
)


def envelope(
    *rcpts: str, sender: str = "bounces@News.Example.com", job: str = "spring"
) -> Envelope:
    return Envelope(
        queue_id="Q1",
        sender=sender,
        recipients=[Recipient(r) for r in rcpts],
        received_at=NOW,
        size=len(MESSAGE),
        job_id=job,
    )


def parsed(data: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def test_fields_added_after_the_trace_and_the_token_verifies() -> None:
    out = STEP.apply(MESSAGE, envelope("Ann@example.org"), None, NOW)
    assert isinstance(out, bytes)
    assert out.startswith(b"Received: ")
    lines = out.split(b"\r\n")
    assert lines[1].startswith(b"List-Unsubscribe: <https://news.example.com/unsubscribe/")
    assert lines[2].startswith(b" <mailto:unsubscribe@bounce.example.com?subject=unsubscribe:")
    assert lines[3] == b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    assert all(len(line) <= 998 for line in lines)
    msg = parsed(out)
    https, mailto = (u.strip().strip("<>") for u in str(msg["List-Unsubscribe"]).split(","))
    token = https.rpartition("/")[2]
    assert mailto.endswith(f"?subject=unsubscribe:{token}")
    what = read_token(SECRET, token, now=NOW)
    assert (what.recipient, what.scope, what.job_id) == (
        "Ann@example.org",
        "news.example.com",
        "spring",
    )
    assert what.issued_day == today(NOW)
    assert out.endswith(b"\r\n\r\nbody\r\n")


def test_url_only_and_mailto_only() -> None:
    url_only = UnsubscribeStep(
        SECRET, url="https://u.test/x", sender_domains=frozenset({"news.example.com"})
    )
    msg = parsed(bytes(url_only.apply(MESSAGE, envelope("a@example.org"), None, NOW)))  # type: ignore[arg-type]
    assert str(msg["List-Unsubscribe"]).startswith("<https://u.test/x/")
    assert "mailto" not in str(msg["List-Unsubscribe"])
    mail_only = UnsubscribeStep(
        SECRET, mailto="u@b.test", sender_domains=frozenset({"news.example.com"})
    )
    msg = parsed(bytes(mail_only.apply(MESSAGE, envelope("a@example.org"), None, NOW)))  # type: ignore[arg-type]
    assert str(msg["List-Unsubscribe"]).startswith("<mailto:u@b.test?subject=unsubscribe:")


def test_skipped_when_the_message_has_its_own_list_unsubscribe() -> None:
    own = MESSAGE.replace(
        b"Subject: hi\r\n", b"Subject: hi\r\nlist-unsubscribe: <mailto:x@y.test>\r\n"
    )
    assert STEP.apply(own, envelope("a@example.org"), True, NOW) is own


def test_skipped_for_several_recipients_the_null_sender_and_other_domains() -> None:
    assert STEP.apply(MESSAGE, envelope("a@example.org", "b@example.org"), True, NOW) is MESSAGE
    assert STEP.apply(MESSAGE, envelope("a@example.org", sender=""), True, NOW) is MESSAGE
    assert (
        STEP.apply(MESSAGE, envelope("a@example.org", sender="x@other.test"), None, NOW) is MESSAGE
    )


def test_the_request_overrides_the_sender_domains() -> None:
    assert STEP.apply(MESSAGE, envelope("a@example.org"), False, NOW) is MESSAGE
    out = STEP.apply(MESSAGE, envelope("a@example.org", sender="x@other.test"), True, NOW)
    assert b"List-Unsubscribe-Post" in bytes(out)  # type: ignore[arg-type]


def test_wanted_table() -> None:
    domains = {"news.example.com"}
    base = {
        "sender": "a@news.example.com",
        "recipients": 1,
        "asked": None,
        "has_list_unsubscribe": False,
    }
    assert wanted(domains, **base)  # type: ignore[arg-type]
    assert not wanted(domains, **{**base, "recipients": 2})  # type: ignore[arg-type]
    assert not wanted(domains, **{**base, "has_list_unsubscribe": True})  # type: ignore[arg-type]
    assert not wanted(domains, **{**base, "asked": False})  # type: ignore[arg-type]
    assert wanted(set(), **{**base, "asked": True})  # type: ignore[arg-type]
    assert not wanted(set(), **base)  # type: ignore[arg-type]
    assert not wanted(domains, **{**base, "sender": ""})  # type: ignore[arg-type]


def test_an_enormous_job_is_left_out_of_the_token() -> None:
    out = STEP.apply(MESSAGE, envelope("a@example.org", job="j" * 900), None, NOW)
    msg = parsed(bytes(out))  # type: ignore[arg-type]
    token = str(msg["List-Unsubscribe"]).split(">")[0].rpartition("/")[2]
    assert read_token(SECRET, token).job_id == ""


def test_a_spilled_message_changes_only_its_head(tmp_path: Path) -> None:
    class Tail:  # the SpillFile surface the step may touch: none of it
        size = 6

    head = MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n"
    spilled = SpilledBody(head, Tail())  # type: ignore[arg-type]
    out = STEP.apply(spilled, envelope("a@example.org"), None, NOW)
    assert isinstance(out, SpilledBody) and out.tail is spilled.tail
    assert b"List-Unsubscribe-Post" in out.head and out.head.endswith(b"Subject: hi\r\n")


def test_take_request_strips_the_header_and_trusts_only_relay_clients() -> None:
    data = MESSAGE.replace(b"Subject: hi\r\n", b"Subject: hi\r\nX-Outrider-Unsubscribe: YES\r\n")
    trusted = Submission(source=Source.SMTP, client_trusted=True)
    out, asked = take_request(trusted, data)
    assert asked is True and b"X-Outrider" not in bytes(out)  # type: ignore[arg-type]
    out, asked = take_request(Submission(source=Source.SMTP), data)
    assert asked is None and b"X-Outrider" not in bytes(out)  # type: ignore[arg-type]
    no = data.replace(b"YES", b"no")
    assert take_request(trusted, no)[1] is False
    assert take_request(trusted, data.replace(b"YES", b"maybe"))[1] is None
    api = Submission(source=Source.API, unsubscribe=False, auth_user="t")
    assert take_request(api, data)[1] is False
    assert take_request(trusted, MESSAGE) == (MESSAGE, None)


def test_insert_after_a_folded_first_field() -> None:
    head = b"Received: from a\r\n\tby b; date\r\nFrom: x\r\n"
    assert insert_after_first_field(head, b"N: v\r\n") == (
        b"Received: from a\r\n\tby b; date\r\nN: v\r\nFrom: x\r\n"
    )


def test_step_from_config_makes_a_0600_secret(tmp_path: Path) -> None:
    assert step_from_config(UnsubscribeSettings()) is None
    path = tmp_path / "var" / "unsubscribe-secret"
    settings = UnsubscribeSettings(url="https://u.test/unsubscribe", secret_file=path)
    step = step_from_config(settings)
    assert step is not None and len(step.secret) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = step_from_config(settings)
    assert again is not None and again.secret == step.secret


def test_a_short_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("short\n")
    with pytest.raises(ValueError, match="too short"):
        step_from_config(UnsubscribeSettings(url="https://u.test/u", secret_file=path))
