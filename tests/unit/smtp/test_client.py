"""Dialogue tests for the sans-I/O SMTP client: bytes in, bytes out, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outrider.message.envelope import Envelope, Notify, Recipient, Ret
from outrider.smtp.client import (
    Phase,
    ReplyParser,
    SmtpClientConnection,
    SmtpProtocolError,
    State,
    Transaction,
    dot_stuff,
    utf8_addr_xtext,
    xtext_encode,
)
from outrider.smtp.replies import Reply

FULL_EHLO = (
    b"250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
    b"250-SMTPUTF8\r\n250-CHUNKING\r\n250-DSN\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n"
)


def ehlo(*extensions: str) -> bytes:
    lines = ["mx.test Hello", *extensions]
    out = [f"250-{line}\r\n" for line in lines[:-1]] + [f"250 {lines[-1]}\r\n"]
    return "".join(out).encode()


def sent(conn: SmtpClientConnection) -> bytes:
    return b"".join(conn.data_to_send())


def ready(ehlo_reply: bytes = FULL_EHLO) -> SmtpClientConnection:
    conn = SmtpClientConnection("client.test")
    assert conn.awaiting is Phase.GREETING
    conn.receive_data(b"220 mx.test ESMTP\r\n")
    assert sent(conn) == b"EHLO client.test\r\n"
    conn.receive_data(ehlo_reply)
    assert conn.state is State.READY
    return conn


def envelope(sender: str = "s@a.test", **kw: object) -> Envelope:
    return Envelope("Q1", sender, [], 0.0, **kw)  # type: ignore[arg-type]


def rcpts(*addresses: str) -> list[Recipient]:
    return [Recipient(a) for a in addresses]


def finals(tx: Transaction) -> list[str]:
    return [str(r) for r in tx.final_replies()]


# -- reply parser -------------------------------------------------------------


def test_parse_enhanced_code() -> None:
    assert ReplyParser().feed(b"550 5.1.1 no such user\r\n") == [
        Reply(550, "5.1.1", "no such user")
    ]


def test_parse_without_enhanced_code_and_bare_code() -> None:
    replies = ReplyParser().feed(b"220 mx.test ESMTP ready\r\n250\r\n354 go ahead\n")
    assert replies == [
        Reply(220, "", "mx.test ESMTP ready"),
        Reply(250, "", ""),
        Reply(354, "", "go ahead"),
    ]


def test_parse_multiline_strips_repeated_enhanced_code() -> None:
    data = b"451-4.7.1 greylisted\r\n451-4.7.1 come back\r\n451 4.7.1 later\r\n"
    assert ReplyParser().feed(data) == [Reply(451, "4.7.1", "greylisted\ncome back\nlater")]


def test_parse_enhanced_class_must_match_code() -> None:
    assert ReplyParser().feed(b"550 2.1.5 odd\r\n") == [Reply(550, "", "2.1.5 odd")]


def test_parse_is_incremental_at_every_split() -> None:
    data = b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n550 5.1.1 no\r\n"
    expected = ReplyParser().feed(data)
    assert len(expected) == 2
    for cut in range(len(data) + 1):
        parser = ReplyParser()
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == expected


@pytest.mark.parametrize(
    "garbage",
    [b"hello\r\n", b"2x0 ok\r\n", b"600 nope\r\n", b"250x\r\n", b"25\r\n", b"250-a\r\n550 b\r\n"],
)
def test_parse_garbage_is_a_protocol_error(garbage: bytes) -> None:
    with pytest.raises(SmtpProtocolError):
        ReplyParser().feed(garbage)


def test_parse_buffer_is_bounded() -> None:
    parser = ReplyParser(max_line_length=100, max_lines=5)
    with pytest.raises(SmtpProtocolError, match="longer than 100"):
        parser.feed(b"250 " + b"x" * 200)
    with pytest.raises(SmtpProtocolError, match="5 lines"):
        ReplyParser(max_lines=5).feed(b"250-x\r\n" * 6)


@given(st.binary(max_size=300))
def test_parse_never_crashes_on_arbitrary_bytes(data: bytes) -> None:
    parser = ReplyParser()
    try:
        for reply in parser.feed(data):
            assert 200 <= reply.code < 600
    except SmtpProtocolError:
        pass


@given(st.binary(max_size=200))
def test_connection_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    conn = ready()
    tx = conn.start_transaction(envelope(), rcpts("a@b.test"), b"x\r\n")
    conn.receive_data(data)
    if conn.state is State.FAILED:
        assert tx.done and all(r.is_transient for r in tx.final_replies())


# -- handshake ------------------------------------------------------------------


def test_extensions_parsed() -> None:
    ext = ready().extensions
    assert (ext.pipelining, ext.size, ext.eightbitmime, ext.smtputf8) == (True, 1000, True, True)
    assert (ext.chunking, ext.dsn, ext.starttls, ext.enhancedstatuscodes) == (
        True,
        True,
        True,
        True,
    )
    bare = ready(ehlo("SIZE", "AUTH PLAIN LOGIN")).extensions
    assert bare.size == 0 and not bare.pipelining and bare.keywords["AUTH"] == "PLAIN LOGIN"


def test_ehlo_5xx_falls_back_to_helo() -> None:
    conn = SmtpClientConnection("client.test")
    conn.receive_data(b"220 old.test SMTP\r\n")
    assert sent(conn) == b"EHLO client.test\r\n"
    conn.receive_data(b"502 5.5.1 what?\r\n")
    assert sent(conn) == b"HELO client.test\r\n"
    assert conn.awaiting is Phase.HELO
    conn.receive_data(b"250 old.test\r\n")
    assert conn.state is State.READY and not conn.esmtp and not conn.extensions.pipelining


def test_ehlo_4xx_refuses() -> None:
    conn = SmtpClientConnection("client.test")
    conn.receive_data(b"220 mx\r\n450 4.7.1 not now\r\n")
    assert conn.state is State.REFUSED and conn.error == Reply(450, "4.7.1", "not now")


def test_greeting_554_refused_then_quit() -> None:
    conn = SmtpClientConnection("client.test")
    conn.receive_data(b"554 5.7.1 go away\r\n")
    assert conn.state is State.REFUSED and conn.error_from_peer
    assert sent(conn) == b""
    conn.quit()
    assert sent(conn) == b"QUIT\r\n"
    conn.receive_data(b"221 bye\r\n")
    assert conn.state is State.CLOSED


def test_greeting_421_fails() -> None:
    conn = SmtpClientConnection("client.test")
    conn.receive_data(b"421 4.3.2 busy\r\n")
    assert conn.state is State.FAILED and conn.error == Reply(421, "4.3.2", "busy")
    with pytest.raises(RuntimeError):
        conn.quit()


def test_invalid_helo_name_rejected() -> None:
    with pytest.raises(ValueError):
        SmtpClientConnection("bad\r\nname")


def test_starttls_then_ehlo_again() -> None:
    conn = ready()
    conn.starttls()
    assert sent(conn) == b"STARTTLS\r\n"
    conn.receive_data(b"220 2.0.0 go ahead\r\n")
    assert conn.state is State.TLS_PENDING
    conn.tls_established()
    assert conn.tls_active and conn.extensions.size is None
    assert sent(conn) == b"EHLO client.test\r\n"
    conn.receive_data(ehlo("PIPELINING"))
    assert conn.state is State.READY and conn.extensions.pipelining


def test_starttls_response_injection_is_refused() -> None:
    conn = ready()
    conn.starttls()
    conn.receive_data(b"220 go ahead\r\n250-injected\r\n")
    assert conn.state is State.FAILED and not conn.error_from_peer
    conn = ready()
    conn.starttls()
    conn.receive_data(b"220 go ahead\r\n250 injected\r\n")
    assert conn.state is State.FAILED


def test_starttls_refused_stays_in_clear() -> None:
    conn = ready()
    conn.starttls()
    conn.receive_data(b"454 4.7.0 TLS not available\r\n")
    assert conn.state is State.READY and not conn.tls_active
    assert conn.starttls_reply == Reply(454, "4.7.0", "TLS not available")


def test_unsolicited_reply_while_idle() -> None:
    conn = ready()
    conn.receive_data(b"421 4.4.2 idle timeout\r\n")
    assert conn.state is State.FAILED and conn.error == Reply(421, "4.4.2", "idle timeout")
    conn = ready()
    conn.receive_data(b"250 surprise\r\n")
    assert conn.state is State.FAILED and conn.error is not None and conn.error.code == 451


# -- transactions -----------------------------------------------------------


def test_pipelined_group_and_per_recipient_results() -> None:
    conn = ready(ehlo("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"))
    tx = conn.start_transaction(
        envelope(), rcpts("a@x.test", "bad@x.test", "c@x.test"), b"Subject: t\r\n\r\nhi\r\n"
    )
    assert conn.data_to_send() == [
        b"MAIL FROM:<s@a.test>\r\n",
        b"RCPT TO:<a@x.test>\r\n",
        b"RCPT TO:<bad@x.test>\r\n",
        b"RCPT TO:<c@x.test>\r\n",
        b"DATA\r\n",
    ]
    assert conn.awaiting is Phase.MAIL
    conn.receive_data(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n")
    assert conn.awaiting is Phase.RCPT and sent(conn) == b""
    conn.receive_data(b"250 2.1.5 ok\r\n354 go\r\n")
    assert sent(conn) == b"Subject: t\r\n\r\nhi\r\n.\r\n"
    assert conn.awaiting is Phase.DATA_DONE and not tx.done
    conn.receive_data(b"250 2.0.0 queued as X\r\n")
    assert tx.done and conn.state is State.READY
    assert finals(tx) == [
        "250 2.0.0 queued as X",
        "550 5.1.1 no such user",
        "250 2.0.0 queued as X",
    ]
    assert tx.data_reply == Reply(250, "2.0.0", "queued as X")


def test_final_data_reply_applies_to_every_accepted_recipient() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test", "b@x.test"), b"x\r\n")
    conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n451 4.3.0 disk full\r\n")
    assert finals(tx) == ["451 4.3.0 disk full"] * 2


def test_pipelined_no_recipient_accepted_data_refused() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test", "b@x.test"), b"body\r\n")
    sent(conn)
    conn.receive_data(b"250 ok\r\n550 5.1.1 no\r\n551 5.1.6 moved\r\n554 5.5.1 no valid rcpts\r\n")
    assert tx.done and not tx.body_sent and sent(conn) == b""
    assert finals(tx) == ["550 5.1.1 no", "551 5.1.6 moved"]
    assert tx.data_reply is None


def test_pipelined_no_recipient_accepted_but_354_sends_empty_body() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test"), b"secret body\r\n")
    sent(conn)
    conn.receive_data(b"250 ok\r\n550 5.1.1 no\r\n354 go\r\n")
    assert sent(conn) == b".\r\n"
    conn.receive_data(b"554 5.5.1 no valid recipients\r\n")
    assert tx.done and finals(tx) == ["550 5.1.1 no"]


def test_pipelined_mail_refused_settles_everyone_with_mail_reply() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test", "b@x.test"), b"x\r\n")
    sent(conn)
    conn.receive_data(b"553 5.1.8 bad sender\r\n503 5.5.1 no\r\n503 5.5.1 no\r\n")
    assert not tx.done  # the DATA reply is still due
    conn.receive_data(b"503 5.5.1 no\r\n")
    assert tx.done and finals(tx) == ["553 5.1.8 bad sender"] * 2


def test_unpipelined_one_command_at_a_time_and_rset_before_next() -> None:
    conn = ready(ehlo("SIZE 0"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test", "b@x.test"), b".hidden\r\n")
    assert sent(conn) == b"MAIL FROM:<s@a.test> SIZE=9\r\n"
    conn.receive_data(b"250 ok\r\n")
    assert sent(conn) == b"RCPT TO:<a@x.test>\r\n"
    conn.receive_data(b"250 ok\r\n")
    assert sent(conn) == b"RCPT TO:<b@x.test>\r\n"
    conn.receive_data(b"250 ok\r\n")
    assert sent(conn) == b"DATA\r\n"
    conn.receive_data(b"354 go\r\n")
    assert sent(conn) == b"..hidden\r\n.\r\n"
    conn.receive_data(b"250 done\r\n")
    assert finals(tx) == ["250 done", "250 done"]
    tx2 = conn.start_transaction(envelope(), rcpts("c@x.test"), b"x\r\n")
    assert sent(conn) == b"RSET\r\n"
    assert conn.awaiting is Phase.RSET
    conn.receive_data(b"250 reset\r\n")
    assert sent(conn) == b"MAIL FROM:<s@a.test> SIZE=3\r\n"
    conn.receive_data(b"250 ok\r\n")
    assert sent(conn) == b"RCPT TO:<c@x.test>\r\n"
    conn.receive_data(b"250 ok\r\n")
    assert sent(conn) == b"DATA\r\n"
    conn.receive_data(b"354 go\r\n250 done\r\n")
    assert tx2.done and conn.transactions == 2


def test_unpipelined_no_recipient_accepted_sends_no_data() -> None:
    conn = ready(ehlo("8BITMIME"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test"), b"x\r\n")
    conn.receive_data(b"250 ok\r\n")
    sent(conn)
    conn.receive_data(b"550 5.1.1 unknown\r\n")
    assert tx.done and sent(conn) == b"" and finals(tx) == ["550 5.1.1 unknown"]
    conn.start_transaction(envelope(), rcpts("a@x.test"), b"x\r\n")
    assert sent(conn) == b"RSET\r\n"


def test_unpipelined_mail_refused() -> None:
    conn = ready(ehlo("8BITMIME"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test", "b@x.test"), b"x\r\n")
    sent(conn)
    conn.receive_data(b"452 4.3.1 insufficient storage\r\n")
    assert tx.done and sent(conn) == b""
    assert finals(tx) == ["452 4.3.1 insufficient storage"] * 2


def test_pipelined_rset_leads_the_next_group() -> None:
    conn = ready(ehlo("PIPELINING"))
    conn.start_transaction(envelope(), rcpts("a@x.test"), b"x\r\n")
    sent(conn)
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n")
    sent(conn)
    tx = conn.start_transaction(envelope(), rcpts("b@x.test"), b"y\r\n")
    assert sent(conn) == b"RSET\r\nMAIL FROM:<s@a.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
    conn.receive_data(b"250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n")
    assert tx.done and finals(tx) == ["250 ok"]


def test_bdat_when_chunking_offered_no_stuffing() -> None:
    body = b".leading dot\r\nbare\nlf\r\n.\r\n"
    conn = ready(ehlo("PIPELINING", "CHUNKING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test", "b@x.test"), body)
    group = sent(conn)
    assert b"DATA" not in group and b"BDAT" not in group
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    assert sent(conn) == b""
    conn.receive_data(b"550 5.1.1 no\r\n")
    assert conn.data_to_send() == [b"BDAT %d LAST\r\n" % len(body), body]
    assert conn.awaiting is Phase.DATA_DONE
    conn.receive_data(b"250 2.0.0 ok\r\n")
    assert finals(tx) == ["250 2.0.0 ok", "550 5.1.1 no"]


def test_bdat_not_sent_when_nobody_accepted() -> None:
    conn = ready(ehlo("PIPELINING", "CHUNKING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test"), b"x\r\n")
    sent(conn)
    conn.receive_data(b"250 ok\r\n550 5.1.1 no\r\n")
    assert tx.done and sent(conn) == b"" and not tx.body_sent


def test_data_reply_refused_after_rcpts() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test"), b"x\r\n")
    sent(conn)
    conn.receive_data(b"250 ok\r\n250 ok\r\n554 5.7.1 not from you\r\n")
    assert tx.done and finals(tx) == ["554 5.7.1 not from you"] and sent(conn) == b""


def test_smtputf8_required_but_not_offered() -> None:
    conn = ready(ehlo("PIPELINING", "8BITMIME"))
    tx = conn.start_transaction(envelope(smtputf8=True), rcpts("a@x.test", "b@x.test"), b"x")
    assert tx.done and sent(conn) == b"" and conn.state is State.READY
    assert (
        tx.final_replies() == [Reply(550, "5.6.7", "Remote server does not support SMTPUTF8")] * 2
    )
    tx = conn.start_transaction(envelope(), rcpts("ü@x.test"), b"x")
    assert tx.done and tx.final_replies()[0].enhanced == "5.6.7"


def test_smtputf8_and_8bitmime_params() -> None:
    conn = ready(ehlo("PIPELINING", "8BITMIME", "SMTPUTF8"))
    conn.start_transaction(envelope("ü@a.test", smtputf8=True, body_8bit=True), rcpts("é@x"), b"")
    assert sent(conn).split(b"\r\n")[:2] == [
        "MAIL FROM:<ü@a.test> BODY=8BITMIME SMTPUTF8".encode(),
        "RCPT TO:<é@x>".encode(),
    ]


def test_8bit_body_to_peer_without_8bitmime_is_sent_as_is() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(body_8bit=True), rcpts("a@x"), "é\r\n".encode())
    assert sent(conn).startswith(b"MAIL FROM:<s@a.test>\r\n")
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert sent(conn) == "é\r\n.\r\n".encode()
    conn.receive_data(b"250 ok\r\n")
    assert tx.done


def test_size_limit_refuses_locally() -> None:
    conn = ready(ehlo("PIPELINING", "SIZE 10"))
    tx = conn.start_transaction(envelope(), rcpts("a@x", "b@x"), b"x" * 11)
    assert tx.done and sent(conn) == b""
    assert {(r.code, r.enhanced) for r in tx.final_replies()} == {(552, "5.3.4")}
    conn.start_transaction(envelope(), rcpts("a@x"), b"x" * 10)
    assert sent(conn).startswith(b"MAIL FROM:<s@a.test> SIZE=10\r\n")


def test_dsn_params_xtext_encoded() -> None:
    env = envelope(ret=Ret.HDRS, envid="id+1=2 x")
    recipients = [
        Recipient("a@x", orcpt="rfc822;a+b=c@x", notify=Notify.SUCCESS | Notify.FAILURE),
        Recipient("b@x", notify=Notify.NEVER),
        Recipient("c@x", orcpt="rfc822;ü@x"),
    ]
    conn = ready(ehlo("PIPELINING", "DSN"))
    conn.start_transaction(env, recipients, b"x")
    lines = sent(conn).split(b"\r\n")
    assert lines[:4] == [
        b"MAIL FROM:<s@a.test> RET=HDRS ENVID=id+2B1+3D2+20x",
        b"RCPT TO:<a@x> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb+3Dc@x",
        b"RCPT TO:<b@x> NOTIFY=NEVER",
        b"RCPT TO:<c@x>",  # non-ASCII ORCPT without SMTPUTF8 cannot be represented
    ]
    conn = ready(ehlo("PIPELINING"))
    conn.start_transaction(env, recipients, b"x")
    assert b"NOTIFY" not in sent(conn)


def test_dsn_utf8_orcpt_with_smtputf8() -> None:
    conn = ready(ehlo("PIPELINING", "DSN", "SMTPUTF8"))
    conn.start_transaction(envelope(smtputf8=True), [Recipient("c@x", orcpt="rfc822;ü+@x")], b"")
    assert "ORCPT=utf-8;ü\\x{2B}@x".encode() in sent(conn)


def test_cr_lf_nul_in_addresses_never_reach_the_wire() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(
        envelope(), rcpts("ok@x", "evil@x>\r\nRCPT TO:<x@y", "nul\x00@x", ""), b"x\r\n"
    )
    group = sent(conn)
    assert group == b"MAIL FROM:<s@a.test>\r\nRCPT TO:<ok@x>\r\nDATA\r\n"
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n")
    replies = tx.final_replies()
    assert replies[0].code == 250
    assert {(r.code, r.enhanced) for r in replies[1:]} == {(501, "5.1.3")}
    conn2 = ready()
    tx = conn2.start_transaction(envelope("s@x\r\nDATA"), rcpts("ok@x"), b"x")
    assert tx.done and sent(conn2) == b"" and tx.final_replies()[0].enhanced == "5.1.7"


def test_421_mid_transaction_keeps_definite_answers() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x", "b@x", "c@x"), b"x\r\n")
    sent(conn)
    conn.receive_data(b"250 ok\r\n250 ok\r\n550 5.1.1 no\r\n421 4.3.2 shutting down\r\n")
    assert tx.done and conn.state is State.FAILED
    assert finals(tx) == ["421 4.3.2 shutting down", "550 5.1.1 no", "421 4.3.2 shutting down"]


def test_garbage_mid_transaction_fails_transiently() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x"), b"x\r\n")
    conn.receive_data(b"250 ok\r\nHTTP/1.1 400 Bad Request\r\n")
    assert tx.done and conn.state is State.FAILED
    reply = tx.final_replies()[0]
    assert (reply.code, reply.enhanced) == (451, "4.5.0") and "Protocol error" in reply.text
    assert conn.receive_data(b"250 late\r\n") == []


def test_abort_settles_pending_recipients_only() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x", "b@x"), b"x\r\n")
    conn.receive_data(b"250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n")
    conn.abort(Reply(451, "4.4.2", "Connection lost: reset"))
    assert finals(tx) == ["550 5.1.1 no", "451 4.4.2 Connection lost: reset"]
    assert conn.state is State.FAILED and not conn.error_from_peer


def test_wrong_state_is_a_local_error() -> None:
    conn = SmtpClientConnection("client.test")
    with pytest.raises(RuntimeError):
        conn.start_transaction(envelope(), rcpts("a@x"), b"")
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x"), b"")
    with pytest.raises(RuntimeError):
        conn.quit()
    with pytest.raises(RuntimeError):
        tx.final_replies()


# -- encoders ---------------------------------------------------------------


def test_xtext() -> None:
    assert xtext_encode("plain@x.test") == "plain@x.test"
    assert xtext_encode("a+b=c d\r") == "a+2Bb+3Dc+20d+0D"
    assert xtext_encode("é") == "+C3+A9"
    assert utf8_addr_xtext("ü=a\\b") == "ü\\x{3D}a\\x{5C}b"


@pytest.mark.parametrize(
    ("body", "wire"),
    [
        (b"", b".\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b".a\r\n.\r\n..b\r\n", b"..a\r\n..\r\n...b\r\n.\r\n"),
        (b"a\n.\nb\rc\r\n", b"a\r\n..\r\nb\r\nc\r\n.\r\n"),
    ],
)
def test_dot_stuff(body: bytes, wire: bytes) -> None:
    assert b"".join(dot_stuff(body)) == wire
