from __future__ import annotations

from outrider.message.assemble import AcceptedRecipient, SessionFacts, assemble
from outrider.message.envelope import Notify, Ret

FACTS = SessionFacts(client_ip="127.0.0.9", helo="client.test", by_host="mx.test", protocol="ESMTP")


def build(content: bytes, n: int = 1) -> tuple[object, bytes]:
    return assemble(
        queue_id="Q1",
        sender="s@a.test",
        recipients=[AcceptedRecipient(f"r{i}@b.test", Notify.FAILURE, None) for i in range(n)],
        content=content,
        ret=Ret.HDRS,
        envid="E1",
        smtputf8=False,
        body_8bit=False,
        session=FACTS,
        now=1_700_000_000.0,
    )


def test_trace_header_job_and_message_id() -> None:
    env, data = build(
        b"X-Job: spring-sale\r\nMessage-ID: <abc@a.test>\r\nSubject: s\r\n\r\nbody\r\n"
    )
    assert data.startswith(b"Received: from client.test")
    assert b"X-Job" not in data
    assert b"for <r0@b.test>" in data
    assert env.job_id == "spring-sale"  # type: ignore[attr-defined]
    assert env.msg_id == "<abc@a.test>"  # type: ignore[attr-defined]
    assert env.size == len(data)  # type: ignore[attr-defined]
    assert env.ret is Ret.HDRS and env.envid == "E1"  # type: ignore[attr-defined]
    assert not env.body_8bit  # type: ignore[attr-defined]


def test_eight_bit_content_is_detected_and_several_recipients_have_no_for_clause() -> None:
    env, data = build("Subject: é\r\n\r\ncafé\r\n".encode(), n=2)
    assert env.body_8bit  # type: ignore[attr-defined]
    assert b"for <" not in data.split(b"\r\n\r\n", 1)[0].split(b"Subject")[0]
    assert [r.notify for r in env.recipients] == [Notify.FAILURE, Notify.FAILURE]  # type: ignore[attr-defined]
