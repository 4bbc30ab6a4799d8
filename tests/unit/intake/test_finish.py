"""Header completion (was message/assemble): trace header, X-Job, X-Virtual-MTA, Date and
Message-ID for submissions, typed metadata on the envelope."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from outrider.intake.finish import finish_message
from outrider.intake.submission import MailEnvelope, MailRecipient, Submission
from outrider.message.envelope import Envelope, Notify, Ret, Source

NOW = 1_700_000_000.0
SUBMISSION = Submission(
    source=Source.SMTP,
    listener="127.0.0.1:25",
    client_ip="127.0.0.9",
    helo="client.test",
    protocol="ESMTP",
    envid="E1",
    ret=Ret.HDRS,
)


def build(
    content: bytes, n: int = 1, submission: Submission = SUBMISSION
) -> tuple[Envelope, bytes]:
    mail = MailEnvelope(
        "s@a.test", tuple(MailRecipient(f"r{i}@b.test", Notify.FAILURE) for i in range(n))
    )
    return finish_message(submission, mail, content, queue_id="Q1", hostname="mx.test", now=NOW)


def test_trace_header_job_and_message_id() -> None:
    env, data = build(
        b"X-Job: spring-sale\r\nMessage-ID: <abc@a.test>\r\nSubject: s\r\n\r\nbody\r\n",
        submission=replace(SUBMISSION, client_trusted=True),
    )
    assert data.startswith(b"Received: from client.test")
    assert b"X-Job" not in data
    assert b"for <r0@b.test>" in data
    assert b"with ESMTP id Q1" in data
    assert env.job_id == "spring-sale"
    assert env.msg_id == "<abc@a.test>"
    assert env.size == len(data)
    assert env.ret is Ret.HDRS and env.envid == "E1"
    assert not env.body_8bit
    assert (env.source, env.listener, env.auth_user) == (Source.SMTP, "127.0.0.1:25", "")
    assert env.vmta == ""  # chosen by the intake afterwards


def test_eight_bit_content_is_detected_and_several_recipients_have_no_for_clause() -> None:
    env, data = build("Subject: é\r\n\r\ncafé\r\n".encode(), n=2)
    assert env.body_8bit
    assert b"for <" not in data.split(b"\r\n\r\n", 1)[0].split(b"Subject")[0]
    assert [r.notify for r in env.recipients] == [Notify.FAILURE, Notify.FAILURE]


def test_x_virtual_mta_is_removed_and_kept_only_when_the_listener_honours_it() -> None:
    content = b"X-Virtual-MTA: mta10\r\nSubject: s\r\n\r\nb\r\n"
    ignored, data = build(content)
    assert b"X-Virtual-MTA" not in data and ignored.vmta_request == ""
    honoured, data = build(content, submission=replace(SUBMISSION, vmta_header=True))
    assert b"X-Virtual-MTA" not in data and honoured.vmta_request == "mta10"


@pytest.mark.parametrize(
    ("trusted", "auth_user", "job"),
    [(True, None, "spring-sale"), (False, "alice", "spring-sale"), (False, None, "")],
)
def test_x_job_is_honoured_only_from_trusted_or_authenticated_clients(
    trusted: bool, auth_user: str | None, job: str, caplog: pytest.LogCaptureFixture
) -> None:
    submission = replace(SUBMISSION, client_trusted=trusted, auth_user=auth_user)
    with caplog.at_level(logging.DEBUG, logger="outrider.intake"):
        env, data = build(b"X-Job: spring-sale\r\nSubject: s\r\n\r\nb\r\n", submission=submission)
    assert env.job_id == job
    assert b"X-Job" not in data  # removed either way
    ignored = [r for r in caplog.records if "X-Job" in r.getMessage()]
    if job:
        assert ignored == []
    else:
        [record] = ignored
        assert record.levelno == logging.DEBUG
        assert "127.0.0.9" in record.getMessage() and "spring-sale" in record.getMessage()


def test_listener_default_auth_user_and_given_job_are_recorded() -> None:
    submission = replace(SUBMISSION, listener_vmta="pool1", auth_user="alice", job_id="given")
    env, data = build(b"X-Job: from-header\r\n\r\nb\r\n", submission=submission)
    assert (env.listener_vmta, env.auth_user, env.job_id) == ("pool1", "alice", "given")
    assert b"X-Job" not in data


def test_missing_date_and_message_id_are_added_only_for_submissions() -> None:
    bare = b"Subject: bare\r\n\r\nbody\r\n"
    env, data = build(bare)
    assert b"Date:" not in data and env.msg_id == ""
    env, data = build(bare, submission=replace(SUBMISSION, add_missing_headers=True))
    assert b"\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n" in data
    assert env.msg_id == "<Q1@mx.test>"
    complete = b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <m@a.test>\r\n\r\nb\r\n"
    env, data = build(complete, submission=replace(SUBMISSION, add_missing_headers=True))
    assert data.count(b"Date: ") == 1 and env.msg_id == "<m@a.test>"
