"""Standards details found in interop tests (issue 14), against the real daemon.

``outrider run`` as a subprocess; clients are smtplib (raw BDAT where smtplib has none);
the next hop is the scripted loopback server.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Callable

from tests.support.daemon import DaemonHandle, rows, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

SENDER = "a@sender.test"
WAIT = 30.0
# Binary MIME: NUL, bare CR, bare LF, 8-bit octets and a 1500-octet line.
PAYLOAD = b"\x00\x01\x02\rbare CR\nbare LF\xff\xfe" + b"z" * 1500 + b"\r\n"
BINARY = (
    b"From: a@sender.test\r\nSubject: binary\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + PAYLOAD
)


def send_binarymime(d: DaemonHandle, rcpt: str) -> None:
    with smtplib.SMTP(d.host, d.port, timeout=20) as client:
        client.ehlo("client.test")
        assert client.has_extn("binarymime") and client.has_extn("chunking")
        assert client.mail(SENDER, ["BODY=BINARYMIME"])[0] == 250
        assert client.rcpt(rcpt)[0] == 250
        client.send(f"BDAT {len(BINARY)} LAST\r\n".encode() + BINARY)
        code, text = client.getreply()
        assert code == 250, text


def test_binarymime_refused_with_5_6_3_where_the_next_hop_cannot_take_it(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    """The sink offers 8BITMIME and CHUNKING but no BINARYMIME: nothing is relabelled."""
    d = make_daemon()
    d.start()
    send_binarymime(d, "bin@example.org")
    wait_until(lambda: bool(rows(d, "b")), timeout=WAIT, what="the b row")
    [bounced] = rows(d, "b")
    assert bounced["dsnStatus"] == "5.6.3" and bounced["dsnDiag"].startswith("554 5.6.3 ")
    assert not [m for m in sink.messages if "bin@example.org" in m.rcpts]
    assert d.stop() == 0


def test_binarymime_relayed_as_is_to_a_binarymime_next_hop(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(extra_extensions=("BINARYMIME",))
    d = make_daemon()
    d.start()
    send_binarymime(d, "bin@example.org")
    wait_until(lambda: bool(sink.messages), timeout=WAIT, what="the relayed message")
    [msg] = sink.messages
    assert msg.bdat and msg.mail_params.get("BODY") == "BINARYMIME"
    assert msg.data.endswith(BINARY)  # every octet as received, after our Received field
    assert d.stop() == 0


def test_expired_recipient_is_4_4_7_with_the_last_reply(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"full@example.org": "452 4.2.2 mailbox full"})
    d = make_daemon(domain_defaults='[domain."example.org"]\nbounce-after = "2s"\n')
    d.start()
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        client.sendmail(SENDER, ["full@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    wait_until(lambda: bool(rows(d, "b")), timeout=WAIT, what="the b row")
    [bounced] = rows(d, "b")
    assert (bounced["dsnAction"], bounced["dsnStatus"], bounced["bounceCat"]) == (
        "failed",
        "4.4.7",
        "message-expired",
    )
    assert bounced["dsnDiag"].startswith("452 4.2.2 mailbox full (expired after ")
    wait_until(lambda: any(m.mail_from == "" for m in sink.messages), timeout=WAIT, what="DSN")
    [dsn] = [m.data for m in sink.messages if m.mail_from == ""]
    assert b"Action: failed\r\nStatus: 4.4.7\r\n" in dsn
    assert b"Diagnostic-Code: smtp; 452 4.2.2 mailbox full" in dsn
    assert d.stop() == 0


def test_smtputf8_orcpt_reported_with_the_utf8_type(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"gone@example.org": "550 5.1.1 no such user"})
    d = make_daemon()
    d.start()
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.mail(SENDER, ["SMTPUTF8"])[0] == 250
        orcpt = "ORCPT=rfc822;+C3+BCn+C3+AF@example.org"
        assert client.rcpt("gone@example.org", [orcpt])[0] == 250
        assert client.rcpt("x@example.org", ["ORCPT=utf-8;j+C3+B6ran@example.org"])[0] == 501
        assert client.data("Subject: ü\r\n\r\nhï\r\n".encode())[0] == 250
    wait_until(lambda: any(m.mail_from == "" for m in sink.messages), timeout=WAIT, what="DSN")
    [dsn] = [m.data for m in sink.messages if m.mail_from == ""]
    assert b"message/global-delivery-status" in dsn
    assert "Original-Recipient: utf-8;ünï@example.org\r\n".encode() in dsn
    assert b"rfc822;\xc3\xbcn" not in dsn
    assert d.stop() == 0


def test_multi_line_reply_joined_in_dsn_diag_and_the_daemon_log(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    """Exim 4.96's reply to BDAT LAST: a first line without an enhanced code, then 250 OK."""
    sink.script = ServerScript(data_reply="250  2062 byte chunk, total 2062\n250 OK id=1tQp2x")
    d = make_daemon()
    d.start()
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        client.sendmail(SENDER, ["ann@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    wait_until(lambda: bool(rows(d, "d")), timeout=WAIT, what="the d row")
    joined = "250 2062 byte chunk, total 2062; OK id=1tQp2x"
    assert rows(d, "d")[0]["dsnDiag"] == joined
    assert d.stop() == 0
    assert joined in d.log_text()
    assert not re.search(r"250  2062", d.log_text())
