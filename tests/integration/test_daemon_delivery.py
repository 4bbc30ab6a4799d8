"""End to end: smtplib → outrider daemon (subprocess) → loopback DNS → loopback SMTP sink."""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import time
from collections.abc import Callable

import pytest

from tests.support.daemon import DaemonHandle
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

MSG = (
    b"From: a@sender.test\r\nTo: b@example.org\r\nSubject: hi\r\n"
    b"Message-ID: <m1@sender.test>\r\nX-Job: job-42\r\n\r\nhello\r\n"
)


def send(
    d: DaemonHandle, rcpts: list[str], msg: bytes = MSG, sender: str = "a@sender.test", **kw: object
) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(d.host, d.port, timeout=10) as s:
        return s.sendmail(sender, rcpts, msg, **kw)  # type: ignore[arg-type]


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def spool_files(d: DaemonHandle) -> list[str]:
    """Message files only: the empty files of reserved names (spool.names) come and go."""
    return d.spool_files()


@pytest.mark.parametrize("receivers", [0, 2])
def test_relay_by_mx_and_account(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    d = make_daemon(receiver_processes=receivers)
    d.start()
    assert send(d, ["b@example.org", "c@example.org"]) == {}
    [msg] = sink.wait_for_messages_sync(1, timeout=10)
    assert sorted(msg.rcpts) == ["b@example.org", "c@example.org"]
    assert msg.mail_from == "a@sender.test"
    assert msg.data.startswith(b"Received: from ")
    assert b"X-Job" not in msg.data
    assert msg.helo == "mta.outrider.test"
    wait_for(lambda: _rows_of_type(d, "d") == 2)
    assert d.stop() == 0
    rows = d.accounting_rows()
    assert {r["rcpt"] for r in rows if r["type"] == "d"} == {"b@example.org", "c@example.org"}
    row = rows[0]
    assert row["jobId"] == "job-42"
    assert row["msgId"] == "<m1@sender.test>"
    assert row["dsnAction"] == "relayed"
    assert row["dlvDestinationIp"] == "127.0.0.2"
    assert row["dsnMta"].startswith("mx1.example.org")
    assert spool_files(d) == []


def test_relay_denied_for_outsider_domain(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    # The client is on loopback and relay-networks is 127/8, so narrow it for this test.
    d = make_daemon(extra="")
    text = d.config_path.read_text().replace(
        'relay-networks = ["127.0.0.0/8"]', 'relay-networks = ["10.9.9.9/32"]'
    )
    d.config_path.write_text(text)
    d.start()
    with smtplib.SMTP(d.host, d.port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("a@sender.test")
        code, resp = s.rcpt("x@outside.test")
        assert (code, resp[:5]) == (554, b"5.7.1")
        code, _ = s.rcpt("ok@example.org")
        assert code == 250
    assert d.stop() == 0


def test_permanent_failure_bounces_one_dsn(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(
        rcpt_replies={
            "bad1@example.org": "550 5.1.1 no such user",
            "bad2@example.org": "553 5.1.3 bad mailbox",
        }
    )
    d = make_daemon()
    d.start()
    send(d, ["good@example.org", "bad1@example.org", "bad2@example.org"])
    # the delivery, then the DSN to a@sender.test (whose MX is the same sink)
    msgs = sink.wait_for_messages_sync(2, timeout=10)
    dsn = next(m for m in msgs if m.mail_from == "")
    assert dsn.rcpts == ("a@sender.test",)
    parsed = email.message_from_bytes(dsn.data, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    status = parsed.get_payload()[1]
    text = status.as_string()
    assert "Final-Recipient: rfc822; bad1@example.org" in text
    assert "Final-Recipient: rfc822; bad2@example.org" in text
    assert "good@example.org" not in text
    assert "Status: 5.1.1" in text and "Diagnostic-Code: smtp; 550 5.1.1 no such user" in text
    assert "Remote-MTA: dns; mx1.example.org" in text
    time.sleep(0.5)
    assert len([m for m in sink.messages if m.mail_from == ""]) == 1
    assert d.stop() == 0
    types = sorted(r["type"] for r in d.accounting_rows() if r["orig"] == "a@sender.test")
    assert types == ["b", "b", "d"]


def test_no_dsn_for_null_sender(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"bad@example.org": "550 5.1.1 no such user"})
    d = make_daemon()
    d.start()
    send(d, ["bad@example.org"], sender="")
    wait_for(lambda: _rows_of_type(d, "b") == 1)
    time.sleep(0.5)
    assert sink.messages == []
    assert d.stop() == 0


def test_null_mx_bounces_5_1_10(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(relay_domains=("nullmx.test",))
    d.start()
    send(d, ["x@nullmx.test"])
    [dsn] = sink.wait_for_messages_sync(1, timeout=10)
    assert dsn.mail_from == ""
    assert b"Status: 5.1.10" in dsn.data
    assert d.stop() == 0
    [row] = [r for r in d.accounting_rows() if r["rcpt"] == "x@nullmx.test"]
    assert (row["type"], row["dsnStatus"]) == ("b", "5.1.10")


def test_next_mx_when_first_is_down(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    # mx-dead (127.0.0.3) has nothing listening; mx-live is the sink.
    d = make_daemon(relay_domains=("twomx.test",))
    d.start()
    send(d, ["x@twomx.test"])
    [msg] = sink.wait_for_messages_sync(1, timeout=10)
    assert msg.rcpts == ("x@twomx.test",)
    assert d.stop() == 0


def test_transient_failure_is_retried(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"later@example.org": "451 4.7.1 try again later"})
    d = make_daemon()
    d.start()
    send(d, ["later@example.org"])
    wait_for(lambda: _rows_of_type(d, "t") >= 1, timeout=10)
    sink.script = ServerScript()
    [msg] = sink.wait_for_messages_sync(1, timeout=10)
    assert msg.rcpts == ("later@example.org",)
    assert d.stop() == 0
    types = [r["type"] for r in d.accounting_rows()]
    assert types[0] == "t" and types[-1] == "d"


def _rows_of_type(d: DaemonHandle, kind: str) -> int:
    return len([r for r in d.accounting_rows() if r["type"] == kind])


def test_expiry_bounces_after_bounce_after(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"later@example.org": "451 4.7.1 try again later"})
    d = make_daemon(
        domain_defaults='[domain."example.org"]\nbounce-after = "2s"\nretry-after = ["1s"]'
    )
    d.start()
    send(d, ["later@example.org"])
    [dsn] = sink.wait_for_messages_sync(1, timeout=15)
    assert dsn.mail_from == ""
    assert b"Action: failed" in dsn.data
    assert d.stop() == 0


def test_partial_delivery_survives_restart(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(
        rcpt_replies={"r2@example.org": "451 4.3.0 later", "r3@example.org": "451 4.3.0 later"}
    )
    d = make_daemon(domain_defaults='[domain."example.org"]\nretry-after = ["3s"]')
    d.start()
    send(d, ["r1@example.org", "r2@example.org", "r3@example.org"])
    [first] = sink.wait_for_messages_sync(1, timeout=10)
    assert first.rcpts == ("r1@example.org",)
    wait_for(lambda: _rows_of_type(d, "t") == 2)
    assert d.stop() == 0
    # After the restart only r2 and r3 are tried again, when their retry time comes.
    sink.script = ServerScript()
    d.start()
    msgs = sink.wait_for_messages_sync(2, timeout=10)
    assert sorted(msgs[1].rcpts) == ["r2@example.org", "r3@example.org"]
    time.sleep(0.3)
    assert len(sink.messages) == 2
    assert d.stop() == 0


def test_notify_success_to_peer_without_dsn_sends_relayed_notice(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(omit_extensions=frozenset({"DSN"}))
    d = make_daemon()
    d.start()
    send(d, ["ok@example.org"], rcpt_options=["NOTIFY=SUCCESS"], mail_options=["ENVID=e-77"])
    msgs = sink.wait_for_messages_sync(2, timeout=10)
    notice = next(m for m in msgs if m.mail_from == "")
    assert b"Action: relayed" in notice.data
    assert b"Original-Envelope-Id: e-77" in notice.data
    assert d.stop() == 0


def test_notify_never_and_ret_hdrs(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(
        rcpt_replies={
            "quiet@example.org": "550 5.1.1 no such user",
            "loud@example.org": "550 5.1.1 no such user",
        }
    )
    d = make_daemon()
    d.start()
    send(d, ["quiet@example.org"], rcpt_options=["NOTIFY=NEVER"])
    send(d, ["loud@example.org"], mail_options=["RET=HDRS"], rcpt_options=["NOTIFY=FAILURE"])
    [dsn] = sink.wait_for_messages_sync(1, timeout=10)
    assert b"loud@example.org" in dsn.data and b"quiet@example.org" not in dsn.data
    parsed = email.message_from_bytes(dsn.data, policy=email.policy.default)
    assert parsed.get_payload()[2].get_content_type() == "text/rfc822-headers"
    assert b"hello" not in dsn.data.split(b"text/rfc822-headers", 1)[1]
    time.sleep(0.5)
    assert len(sink.messages) == 1
    assert d.stop() == 0


def test_one_delay_warning_after_delay_warning_after(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"later@example.org": "451 4.7.1 try again later"})
    d = make_daemon(domain_defaults='[domain."example.org"]\ndelay-warning-after = "1s"\n')
    d.start()
    send(d, ["later@example.org"])
    [notice] = sink.wait_for_messages_sync(1, timeout=10)
    assert notice.mail_from == "" and notice.rcpts == ("a@sender.test",)
    assert b"Action: delayed" in notice.data
    assert b"Will-Retry-Until:" in notice.data
    assert b"Status: 4.7.1" in notice.data
    time.sleep(2.5)  # more retries fail, but the sender is warned only once
    assert len(sink.messages) == 1
    assert _rows_of_type(d, "t") >= 2
    assert d.stop() == 0


def test_delay_warning_is_not_repeated_after_a_restart(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    """The "already warned" mark is in the spool file, not only in memory."""
    sink.script = ServerScript(rcpt_replies={"later@example.org": "451 4.7.1 try again later"})
    d = make_daemon(
        domain_defaults=(
            '[domain."example.org"]\ndelay-warning-after = "1s"\nretry-after = ["1s"]\n'
        )
    )
    d.start()
    send(d, ["later@example.org"])
    [notice] = sink.wait_for_messages_sync(1, timeout=10)
    assert b"Action: delayed" in notice.data
    assert d.stop() == 0
    attempts = _rows_of_type(d, "t")
    d.start()
    wait_for(lambda: _rows_of_type(d, "t") >= attempts + 2)  # retried after the restart
    assert [m.mail_from for m in sink.messages] == [""]  # still the one warning
    assert d.stop() == 0


def test_failure_notice_has_the_derived_queue_id_and_is_sent_once(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"gone@example.org": "550 5.1.1 no such user"})
    d = make_daemon()
    d.start()
    send(d, ["gone@example.org"])
    [dsn] = sink.wait_for_messages_sync(1, timeout=10)
    # Stored through the intake under the original's queue id with "-F".
    assert re.match(
        rb"Received: by mta\.outrider\.test \(Outrider\) with local id \S+-F\r\n", dsn.data
    )
    wait_for(lambda: spool_files(d) == [])
    time.sleep(0.3)
    assert len(sink.messages) == 1
    assert d.stop() == 0
