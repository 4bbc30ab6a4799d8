"""Faults end to end: broken clients, smuggling attempts, hung or failing remote servers.

smtplib (or a raw socket through smtplib's low-level calls) → the daemon subprocess →
loopback DNS → scripted sinks on 127.0.0.2 (``example.org``, ``sender.test``) and
127.0.0.3 (``second.test``).
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import socket
import time
from collections.abc import Callable

import pytest

from tests.support.daemon import DaemonHandle, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

SENDER = "a@sender.test"


def message(uid: str, rcpt: str = "b@example.org", body: bytes = b"hello\r\n") -> bytes:
    head = f"From: {SENDER}\r\nTo: {rcpt}\r\nSubject: {uid}\r\nMessage-ID: <{uid}@client.test>\r\n"
    return head.encode() + b"\r\n" + body


def arrived(sink: ScriptedSmtpServer, uid: str) -> int:
    needle = f"\r\nMessage-ID: <{uid}@client.test>\r\n".encode()
    return sum(1 for m in sink.messages if needle in m.data)


def send(d: DaemonHandle, rcpts: list[str], msg: bytes, **kw: object) -> None:
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        assert client.sendmail(SENDER, rcpts, msg, **kw) == {}  # type: ignore[arg-type]


def rows(d: DaemonHandle, rcpt: str) -> list[dict[str, str]]:
    return [r for r in d.accounting_rows() if r["rcpt"] == rcpt]


def types(d: DaemonHandle, rcpt: str) -> list[str]:
    return [r["type"] for r in rows(d, rcpt)]


# -- inbound faults ---------------------------------------------------------------------


@pytest.mark.parametrize("receivers", [0, 2])
def test_client_disconnect_mid_data_leaves_nothing(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    d = make_daemon(receiver_processes=receivers)
    d.start()
    for _ in range(3):
        with socket.create_connection((d.host, d.port), timeout=10) as sock:
            client = sock.makefile("rb")
            assert client.readline().startswith(b"220")
            sock.sendall(
                b"EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\n"
                b"RCPT TO:<b@example.org>\r\nDATA\r\n"
            )
            while not (line := client.readline()).startswith(b"354"):
                assert line.startswith(b"2"), line
            sock.sendall(message("cut-off", body=b"first half of the body\r\n" * 50))
            client.close()
            # closing without the final dot: an abrupt end, no QUIT
    # A complete message afterwards: once it is delivered, the aborted ones would be too.
    send(d, ["b@example.org"], message("complete"))
    wait_until(lambda: arrived(sink, "complete") == 1, what="control message delivered")
    wait_until(lambda: d.spool_files() == [], what="spool empty")
    time.sleep(0.3)
    assert arrived(sink, "cut-off") == 0
    assert d.stop() == 0
    assert d.spool_files() == []
    assert [r["msgId"] for r in d.accounting_rows()] == ["<complete@client.test>"]


@pytest.mark.parametrize(
    "smuggled_end",
    [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"],
    ids=["lf-dot-lf", "crlf-dot-lf", "lf-dot-crlf", "cr-dot-crlf", "crlf-dot-cr"],
)
def test_bare_line_ending_smuggling_goes_nowhere(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, smuggled_end: bytes
) -> None:
    d = make_daemon()
    d.start()
    smuggled = (
        b"MAIL FROM:<smuggler@evil.test>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
        b"From: smuggler@evil.test\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n"
    )
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt("b@example.org")[0] == 250
        assert client.docmd("DATA")[0] == 354
        client.send(message("carrier", body=b"innocent\r\n") + smuggled_end + smuggled)
        client.send(b".\r\n")
        code, text = client.getreply()
        # Either refused outright, or one message whose content holds the would-be commands.
        assert code in (250, 550, 554), (code, text)
        noop = client.noop()
        assert noop[0] == 250, "no smuggled transaction may be waiting for more input"
    send(d, ["b@example.org"], message("control"))
    wait_until(lambda: arrived(sink, "control") == 1, what="control message delivered")
    wait_until(lambda: d.spool_files() == [], what="spool empty")
    time.sleep(0.3)
    for msg in sink.messages:
        assert msg.mail_from != "smuggler@evil.test"
        assert "victim@example.org" not in msg.rcpts
        # Relayed content must not carry a line ending the next hop could misread.
        bare = msg.data.replace(b"\r\n", b"")
        assert b"\n" not in bare and b"\r" not in bare, msg.data
    assert d.stop() == 0


# -- outbound faults --------------------------------------------------------------------


@pytest.mark.parametrize("hang_at", ["greeting", "rcpt"])
def test_hung_mx_does_not_delay_another_domain(
    make_daemon: Callable[..., DaemonHandle],
    sink: ScriptedSmtpServer,
    sink2: ScriptedSmtpServer,
    hang_at: str,
) -> None:
    sink2.script = ServerScript(hang_at=hang_at)  # type: ignore[arg-type]
    d = make_daemon(
        shutdown_timeout="1s",
        domain_defaults=(
            '[domain."second.test"]\nsmtp-greeting-timeout = "60s"\nsmtp-command-timeout = "60s"'
        ),
    )
    d.start()
    send(d, ["x@second.test"], message("stuck", "x@second.test"))
    wait_until(lambda: sink2.current_connections >= 1, what="connection to the hung MX")
    if hang_at == "rcpt":
        wait_until(
            lambda: any(c.upper().startswith("RCPT") for s in sink2.sessions for c in s.commands),
            what="RCPT sent to the hung MX",
        )
    started = time.monotonic()
    send(d, ["y@example.org"], message("free"))
    wait_until(lambda: arrived(sink, "free") == 1, timeout=2.0, what="other domain delivered")
    elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert sink2.messages == [] and sink2.current_connections >= 1, "the first MX still hangs"
    assert types(d, "x@second.test") == []
    assert d.stop(timeout=15) == 0
    assert len(d.spool_files()) == 1, "the hung message stays queued"


@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
def test_connection_dropped_mid_data_is_retried(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, chunking: bool
) -> None:
    omit = frozenset() if chunking else frozenset({"CHUNKING"})
    sink.script = ServerScript(drop_at="body", omit_extensions=omit)
    d = make_daemon()
    d.start()
    send(d, ["b@example.org"], message("dropped", body=b"x" * 70 + b"\r\n" * 100))
    wait_until(lambda: "t" in types(d, "b@example.org"), what="deferral after the drop")
    assert arrived(sink, "dropped") == 0
    sink.script = ServerScript(omit_extensions=omit)
    wait_until(lambda: arrived(sink, "dropped") == 1, what="retry delivered")
    wait_until(lambda: types(d, "b@example.org")[-1:] == ["d"], what="delivery accounted")
    assert d.stop() == 0
    kinds = types(d, "b@example.org")
    assert kinds[0] == "t" and kinds[-1] == "d" and set(kinds) == {"t", "d"}, kinds
    assert [m.bdat for m in sink.messages] == [chunking]
    assert d.spool_files() == []


def test_421_greeting_defers_then_delivers(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(greeting="421 4.3.2 mx.test busy, try later")
    d = make_daemon()
    d.start()
    send(d, ["b@example.org"], message("busy"))
    wait_until(lambda: "t" in types(d, "b@example.org"), what="deferral after 421")
    [first] = rows(d, "b@example.org")[:1]
    assert first["dsnStatus"].startswith("4."), first
    assert "421" in first["dsnDiag"], first
    assert arrived(sink, "busy") == 0
    sink.script = ServerScript()
    wait_until(lambda: arrived(sink, "busy") == 1, what="delivered once the MX accepts")
    wait_until(lambda: types(d, "b@example.org")[-1:] == ["d"], what="delivery accounted")
    assert d.stop() == 0
    assert set(types(d, "b@example.org")) == {"t", "d"}


# -- content the next hop cannot take ---------------------------------------------------


def test_smtputf8_to_a_server_without_it_bounces_5_6_7(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(omit_extensions=frozenset({"SMTPUTF8"}))
    d = make_daemon()
    d.start()
    rcpt = "jörg@example.org"
    msg = (
        f"From: {SENDER}\r\nTo: {rcpt}\r\nSubject: grüße\r\n"
        "Message-ID: <utf8@client.test>\r\n\r\nhallo\r\n"
    ).encode()
    send(d, [rcpt], msg, mail_options=["SMTPUTF8"])
    [dsn] = sink.wait_for_messages_sync(1, timeout=10)
    assert dsn.mail_from == ""
    assert dsn.rcpts == (SENDER,)
    parsed = email.message_from_bytes(dsn.data, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert b"Status: 5.6.7" in dsn.data
    assert b"Action: failed" in dsn.data
    wait_until(lambda: "b" in types(d, rcpt), what="bounce accounted")
    assert d.stop() == 0
    [row] = rows(d, rcpt)
    assert (row["type"], row["dsnStatus"]) == ("b", "5.6.7")
    assert len(sink.messages) == 1, "the original must not be delivered"
    assert d.spool_files() == []


def test_8bit_body_to_a_server_without_8bitmime_is_sent_as_is(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(omit_extensions=frozenset({"8BITMIME"}))
    d = make_daemon()
    d.start()
    body = "Grüße, café — naïve\r\n".encode() + b"latin-1: caf\xe9\r\n"
    msg = message("eightbit", body=body).replace(
        b"Subject:", b"Content-Type: text/plain; charset=utf-8\r\nSubject:"
    )
    send(d, ["b@example.org"], msg, mail_options=["BODY=8BITMIME"])
    [got] = sink.wait_for_messages_sync(1, timeout=10)
    assert got.data.endswith(b"\r\n\r\n" + body), got.data
    assert "BODY" not in got.mail_params, "BODY=8BITMIME to a server that did not offer it"
    wait_until(lambda: types(d, "b@example.org") == ["d"], what="delivery accounted")
    assert d.stop() == 0
