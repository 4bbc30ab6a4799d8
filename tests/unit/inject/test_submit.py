"""Submitting through a real intake (in-memory spool): one message per recipient,
refusals reported per recipient, every message stored before the result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from outrider.config.loader import parse_config
from outrider.inject.request import InjectError
from outrider.inject.submit import prepare, prepare_body, submit_all
from outrider.intake.build import build_intake
from outrider.intake.core import Intake
from outrider.intake.pipeline import Check, IntakePipeline
from outrider.intake.submission import Submission
from outrider.intake.verdict import CONTINUE, Verdict, VerdictResult
from outrider.message.envelope import Envelope, Source
from outrider.smtp.replies import Reply
from tests.support.memory_spool import MemorySpool

CONFIG = """
[server]
hostname = "mx.test"
state-dir = "{state}"
[[listener]]
address = "127.0.0.1:0"
[virtual-mta.pool-a-1]
smtp-source-host = "127.0.0.1 mx.test"
"""


class Journal:
    def __init__(self) -> None:
        self.accepted: list[Envelope] = []

    def accept(self, envelope: Envelope, body: bytes | None) -> None:
        self.accepted.append(envelope)


def campaign(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "envelope_sender": "bounces@news.example.com",
        "recipients": [
            {"email": f"u{i}@example.org", "name": f"User {i}", "substitutions": {"n": i}}
            for i in range(n)
        ],
        "substitutions": {"offer": "two for one"},
        "content": {
            "from": {"email": "news@news.example.com", "name": "News"},
            "subject": "Offer {{ n }}: {{ offer }}",
            "text_body": "Hello {{ name }}",
        },
        **extra,
    }


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Intake, MemorySpool, Journal]:
    spool, sink = MemorySpool(), Journal()
    config = parse_config(CONFIG.format(state=tmp_path))
    return build_intake(config, spool=spool, sink=sink, users=None), spool, sink


async def test_one_stored_message_per_recipient(
    parts: tuple[Intake, MemorySpool, Journal],
) -> None:
    intake, spool, sink = parts
    prepared = prepare(campaign(600, job_id="spring", envid="E1"), intake.vmtas.known)
    result = await submit_all(intake, prepared, auth_user="campaigns", client_ip="127.0.0.1")
    assert result.accepted == 600 and not result.failed
    assert len(spool.bodies) == 600 and len(sink.accepted) == 600
    qid = result.queue_ids["u7@example.org"]
    envelope = spool.saved[qid]
    assert envelope.source is Source.API and envelope.auth_user == "campaigns"
    assert envelope.job_id == "spring" and envelope.envid == "E1"
    assert [r.address for r in envelope.recipients] == ["u7@example.org"]
    assert envelope.msg_id == f"<{qid}@mx.test>"
    body = spool.bodies[qid]
    assert b"Subject: Offer 7: two for one\r\n" in body
    assert b"To: User 7 <u7@example.org>\r\n" in body
    assert body.startswith(b"Received: ")
    assert body.count(b"Message-ID:") == 1 and body.count(b"\r\nDate:") == 1
    reply = result.as_json()
    assert reply["success_count"] == 600 and reply["failure_count"] == 0
    assert json.dumps(reply)


async def test_virtual_mta_is_checked_and_used(
    parts: tuple[Intake, MemorySpool, Journal],
) -> None:
    intake, spool, _ = parts
    with pytest.raises(InjectError) as caught:
        prepare(campaign(1, virtual_mta="nope"), intake.vmtas.known)
    assert caught.value.problems[0].field == "virtual_mta"
    result = await submit_all(
        intake, prepare(campaign(1, virtual_mta="pool-a-1"), intake.vmtas.known), auth_user="a"
    )
    assert spool.saved[result.queue_ids["u0@example.org"]].vmta == "pool-a-1"


async def test_raw_content_gets_date_and_message_id(
    parts: tuple[Intake, MemorySpool, Journal],
) -> None:
    intake, spool, _ = parts
    data = {
        "envelope_sender": "b@news.example.com",
        "recipients": [{"email": "ann@example.org"}],
        "content": "From: b@news.example.com\nSubject: raw\n\nhello\n",
    }
    result = await submit_all(intake, prepare(data), auth_user="admin")
    qid = result.queue_ids["ann@example.org"]
    body = spool.bodies[qid]
    assert f"Message-ID: <{qid}@mx.test>\r\n".encode() in body and b"\r\nDate: " in body
    assert body.endswith(b"\r\nSubject: raw\r\n\r\nhello\r\n")


class RefuseOne(Check):
    def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> VerdictResult:
        if recipient.startswith("u1@"):
            return Verdict.reject(Reply(550, "5.7.1", "not this one"))
        return CONTINUE


async def test_refused_recipients_are_failures_not_errors(
    parts: tuple[Intake, MemorySpool, Journal],
) -> None:
    intake, spool, _ = parts
    intake.pipeline = IntakePipeline([RefuseOne()])
    spool.fail_store = 1  # the first store fails like a full disk
    result = await submit_all(intake, prepare(campaign(4)), auth_user="a", chunk=2)
    reply = result.as_json()
    assert reply["success_count"] == 2 and reply["failure_count"] == 2
    assert "u1@example.org" in reply["failed_recipients"]
    assert any("550 5.7.1 not this one" in e for e in reply["errors"])
    assert any(e.startswith("u0@example.org: 452") for e in reply["errors"])
    assert len(spool.bodies) == 2


def test_prepare_body_refuses_non_json() -> None:
    with pytest.raises(InjectError) as caught:
        prepare_body(b"{not json")
    assert caught.value.problems[0].error.startswith("the request body is not JSON")
