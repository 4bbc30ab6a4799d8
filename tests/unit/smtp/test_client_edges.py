"""Edges of the sans-I/O SMTP client that the dialogue tests leave open: the reply
parser's exact limits, what the connection records about its peer and its failures,
one-by-one RCPT order, empty and discarded bodies, LMTP corners, and which ORCPT forms
reach the wire. Found by mutation testing (docs/testing.md)."""

from __future__ import annotations

import pytest

from outrider.message.envelope import Envelope, Recipient
from outrider.smtp.client import (
    Extensions,
    Phase,
    ReplyParser,
    SmtpClientConnection,
    SmtpProtocolError,
    State,
    StreamedContent,
    Transaction,
)
from outrider.smtp.replies import Reply


def ehlo(*extensions: str) -> bytes:
    lines = ["mx.test Hello", *extensions]
    out = [f"250-{line}\r\n" for line in lines[:-1]] + [f"250 {lines[-1]}\r\n"]
    return "".join(out).encode()


def sent(conn: SmtpClientConnection) -> bytes:
    return b"".join(conn.data_to_send())


def ready(ehlo_reply: bytes, *, lmtp: bool = False) -> SmtpClientConnection:
    conn = SmtpClientConnection("client.test", lmtp=lmtp)
    conn.receive_data(b"220 mx.test ESMTP\r\n")
    sent(conn)
    conn.receive_data(ehlo_reply)
    assert conn.state is State.READY
    return conn


def envelope(sender: str = "s@a.test", **kw: object) -> Envelope:
    return Envelope("Q1", sender, [], 0.0, **kw)  # type: ignore[arg-type]


def rcpts(*addresses: str) -> list[Recipient]:
    return [Recipient(a) for a in addresses]


def finals(tx: Transaction) -> list[str]:
    return [str(r) for r in tx.final_replies()]


# -- reply parser ---------------------------------------------------------------


@pytest.mark.parametrize("code", [250, 500, 501, 554])
def test_the_enhanced_code_class_is_the_reply_codes_first_digit(code: int) -> None:
    enhanced = f"{code // 100}.5.4"
    data = f"{code} {enhanced} arguments\r\n".encode()
    assert ReplyParser().feed(data) == [Reply(code, enhanced, "arguments")]


def test_only_lines_that_begin_with_the_enhanced_code_as_a_word_lose_it() -> None:
    data = b"250-2.1.0 first\r\n250-2.1.0\r\n250-other text\r\n250 2.1.0x\r\n"
    assert ReplyParser().feed(data) == [Reply(250, "2.1.0", "first\n\nother text\n2.1.0x")]


@pytest.mark.parametrize("data", [b"\n", b"\r\n", b"\n250 ok\r\n"])
def test_an_empty_reply_line_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(SmtpProtocolError):
        ReplyParser().feed(data)


def test_reply_text_that_is_not_utf8_is_decoded_with_replacement_characters() -> None:
    assert ReplyParser().feed(b"550 caf\xe9 \xff\r\n") == [Reply(550, "", "caf\ufffd \ufffd")]


def test_a_reply_line_of_exactly_4096_octets_is_accepted_whole_or_in_pieces() -> None:
    line = b"250 " + b"x" * 4092
    assert len(line) == 4096
    (reply,) = ReplyParser().feed(b"250-a\r\n" + line + b"\r\n")
    assert reply.text == "a\n" + "x" * 4092
    parser = ReplyParser()
    assert parser.feed(line) == []
    assert parser.feed(b"\r") == []  # the CR may end a full line
    assert parser.feed(b"\n") == [Reply(250, "", "x" * 4092)]


def test_a_reply_line_over_4096_octets_is_refused_whole_or_unfinished() -> None:
    line = b"250 " + b"x" * 4093
    with pytest.raises(SmtpProtocolError, match="longer than 4096"):
        ReplyParser().feed(line + b"\r\n")
    with pytest.raises(SmtpProtocolError, match="longer than 4096"):
        ReplyParser().feed(line)


def test_a_reply_of_256_lines_is_accepted_and_one_of_257_refused() -> None:
    (reply,) = ReplyParser().feed(b"250-x\r\n" * 255 + b"250 end\r\n")
    assert len(reply.lines()) == 256
    with pytest.raises(SmtpProtocolError, match="256 lines"):
        ReplyParser().feed(b"250-x\r\n" * 256 + b"250 end\r\n")


# -- what the connection records ------------------------------------------------


def test_a_new_connection_awaits_the_greeting_and_knows_nothing_of_its_peer() -> None:
    conn = SmtpClientConnection("client.test")
    assert conn.state is State.GREETING and conn.awaiting is Phase.GREETING
    assert conn.extensions == Extensions()
    assert conn.esmtp is False and conn.tls_active is False
    assert conn.greeting is None and conn.ehlo_reply is None
    assert conn.error is None and conn.error_from_peer is False


def test_the_greeting_and_the_ehlo_reply_are_kept() -> None:
    conn = SmtpClientConnection("client.test")
    conn.receive_data(b"220 mx.test ESMTP\r\n")
    assert conn.greeting == Reply(220, "", "mx.test ESMTP")
    assert conn.state is State.HANDSHAKE and conn.awaiting is Phase.EHLO
    conn.receive_data(b"250-mx.test Hello\r\n250 PIPELINING\r\n")
    assert conn.ehlo_reply == Reply(250, "", "mx.test Hello\nPIPELINING")
    assert conn.esmtp is True


def test_after_the_helo_fallback_the_helo_reply_is_kept_and_the_peer_is_not_esmtp() -> None:
    conn = SmtpClientConnection("client.test")
    conn.receive_data(b"220 old.test\r\n502 5.5.1 what?\r\n")
    conn.receive_data(b"250 old.test\r\n")
    assert conn.ehlo_reply == Reply(250, "", "old.test")
    assert conn.esmtp is False and conn.extensions == Extensions()


def test_a_refused_greeting_or_helo_is_the_error_reported() -> None:
    conn = SmtpClientConnection("client.test")
    conn.receive_data(b"554 5.7.1 go away\r\n")
    assert conn.state is State.REFUSED and conn.error == Reply(554, "5.7.1", "go away")
    conn = SmtpClientConnection("client.test")
    conn.receive_data(b"220 old.test\r\n502 5.5.1 what?\r\n550 5.7.1 not you either\r\n")
    assert conn.state is State.REFUSED
    assert conn.error == Reply(550, "5.7.1", "not you either") and conn.error_from_peer


def test_a_421_is_the_peers_error_a_protocol_error_or_an_abort_is_ours() -> None:
    conn = ready(ehlo("PIPELINING"))
    conn.receive_data(b"421 4.3.2 shutting down\r\n")
    assert conn.state is State.FAILED and conn.error_from_peer is True
    conn = ready(ehlo("PIPELINING"))
    conn.receive_data(b"HTTP/1.1 400 Bad Request\r\n")
    assert conn.state is State.FAILED and conn.error_from_peer is False
    conn = ready(ehlo("PIPELINING"))
    conn.abort(Reply(451, "4.4.2", "Connection lost"))
    assert conn.state is State.FAILED and conn.error_from_peer is False


def test_a_non_ascii_helo_name_never_breaks_the_handshake() -> None:
    conn = SmtpClientConnection("mx.exämple.test")
    conn.receive_data(b"220 old.test\r\n")
    assert sent(conn) == b"EHLO mx.ex?mple.test\r\n"
    conn.receive_data(b"502 5.5.1 what?\r\n")
    assert sent(conn) == b"HELO mx.ex?mple.test\r\n"


def test_starttls_awaits_its_reply() -> None:
    conn = ready(ehlo("STARTTLS"))
    conn.starttls()
    assert conn.state is State.STARTTLS and conn.awaiting is Phase.STARTTLS


def test_quit_awaits_its_reply() -> None:
    conn = ready(ehlo("STARTTLS"))
    conn.quit()
    assert conn.state is State.QUITTING and conn.awaiting is Phase.QUIT


def test_receive_data_returns_every_reply_parsed_even_when_one_ends_the_connection() -> None:
    conn = ready(ehlo("PIPELINING"))
    replies = conn.receive_data(b"421 4.3.2 bye\r\n250 late\r\n")
    assert replies == [Reply(421, "4.3.2", "bye"), Reply(250, "", "late")]
    conn = ready(ehlo("STARTTLS"))
    conn.starttls()
    replies = conn.receive_data(b"220 go ahead\r\n421 4.3.2 injected\r\n")
    assert replies == [Reply(220, "", "go ahead"), Reply(421, "4.3.2", "injected")]
    # whatever follows the 220 in the same read is refused as injection, a 421 included
    assert conn.state is State.FAILED and conn.error is not None and conn.error.code == 451
    assert "after STARTTLS" in conn.error.text and not conn.error_from_peer


# -- transactions -----------------------------------------------------------------


def test_a_transaction_lists_its_recipients_in_the_order_given() -> None:
    rs = rcpts("b@x.test", "a@x.test")
    assert ready(ehlo("PIPELINING")).start_transaction(envelope(), rs, b"x\r\n").recipients == rs
    tx = ready(ehlo("PIPELINING")).start_transaction(envelope(), rs, StreamedContent(3))
    assert tx.recipients == rs


def test_without_pipelining_recipients_go_one_at_a_time_in_order() -> None:
    conn = ready(ehlo("8BITMIME"))
    tx = conn.start_transaction(envelope(), rcpts("a@x", "b@x", "c@x"), b"x\r\n")
    assert sent(conn) == b"MAIL FROM:<s@a.test>\r\n"
    for expected in (b"RCPT TO:<a@x>\r\n", b"RCPT TO:<b@x>\r\n", b"RCPT TO:<c@x>\r\n"):
        conn.receive_data(b"250 ok\r\n")
        assert sent(conn) == expected
    conn.receive_data(b"250 ok\r\n")
    assert sent(conn) == b"DATA\r\n"
    conn.receive_data(b"354 go\r\n250 done\r\n")
    assert finals(tx) == ["250 done"] * 3


def test_an_empty_body_is_sent_as_the_end_of_data_dot_alone() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x"), b"")
    sent(conn)
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert sent(conn) == b".\r\n" and conn.awaiting is Phase.DATA_DONE
    conn.receive_data(b"250 2.0.0 queued\r\n")
    assert finals(tx) == ["250 2.0.0 queued"]


@pytest.mark.parametrize("lmtp", [False, True])
def test_the_reply_to_the_empty_body_sent_for_nobody_is_ignored(lmtp: bool) -> None:
    conn = ready(ehlo("PIPELINING"), lmtp=lmtp)
    tx = conn.start_transaction(envelope(), rcpts("a@x", "b@x"), b"secret\r\n")
    sent(conn)
    conn.receive_data(b"250 ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n354 go\r\n")
    assert sent(conn) == b".\r\n"
    conn.receive_data(b"250 2.0.0 queued anyway\r\n")
    assert tx.done and tx.data_reply is None
    assert finals(tx) == ["550 5.1.1 no"] * 2
    assert conn.state is State.READY and conn.awaiting is None


def test_a_refused_data_command_is_the_transactions_data_reply() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x"), b"x\r\n")
    conn.receive_data(b"250 ok\r\n250 ok\r\n554 5.7.1 not from you\r\n")
    assert tx.data_reply == Reply(554, "5.7.1", "not from you")


def test_a_refusal_before_the_streamed_content_ends_is_the_data_reply_and_the_error() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test"), StreamedContent(100))
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    conn.send_content(b"part\r\n")
    conn.receive_data(b"552 5.3.4 too big\r\n")
    refusal = Reply(552, "5.3.4", "too big")
    assert tx.data_reply == refusal and tx.final_replies() == [refusal]
    assert conn.error == refusal and conn.error_from_peer


def test_a_refused_rset_fails_the_connection_and_defers_the_next_message() -> None:
    conn = ready(ehlo("8BITMIME"))
    conn.start_transaction(envelope(), rcpts("a@x"), b"x\r\n")
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n250 done\r\n")
    tx = conn.start_transaction(envelope(), rcpts("b@x"), b"y\r\n")
    sent(conn)
    conn.receive_data(b"500 5.5.1 what RSET?\r\n")
    assert conn.state is State.FAILED and sent(conn) == b""
    (reply,) = tx.final_replies()
    assert (reply.code, reply.enhanced) == (451, "4.5.0")


def test_a_recipient_left_without_a_reply_is_deferred() -> None:
    tx = Transaction(recipients=rcpts("a@x", "b@x"), replies=[Reply(250, "", "ok"), None])
    tx.done = True
    assert finals(tx) == ["250 ok", "451 4.4.2 No reply received for this recipient"]


# -- LMTP ---------------------------------------------------------------------------


def test_lmtp_data_reply_is_the_last_per_recipient_reply_and_then_nothing_is_awaited() -> None:
    conn = ready(ehlo("PIPELINING"), lmtp=True)
    tx = conn.start_transaction(envelope(), rcpts("a@x", "b@x"), b"hi\r\n")
    conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    conn.receive_data(b"250 2.0.0 a done\r\n452 4.2.2 b full\r\n")
    assert tx.done and tx.data_reply == Reply(452, "4.2.2", "b full")
    assert finals(tx) == ["250 2.0.0 a done", "452 4.2.2 b full"]
    assert conn.state is State.READY and conn.awaiting is None


def test_lmtp_over_bdat_gets_one_reply_per_accepted_recipient() -> None:
    conn = ready(ehlo("PIPELINING", "CHUNKING"), lmtp=True)
    tx = conn.start_transaction(envelope(), rcpts("a@x", "b@x"), b"hi\r\n")
    assert sent(conn) == b"MAIL FROM:<s@a.test>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n"
    conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n")
    assert sent(conn) == b"BDAT 4 LAST\r\nhi\r\n"
    conn.receive_data(b"250 2.0.0 a done\r\n")
    assert not tx.done and conn.awaiting is Phase.DATA_DONE
    conn.receive_data(b"550 5.2.1 b disabled\r\n")
    assert finals(tx) == ["250 2.0.0 a done", "550 5.2.1 b disabled"]
    assert conn.state is State.READY and conn.awaiting is None


# -- ORCPT --------------------------------------------------------------------------


def rcpt_line(orcpt: str, *, ehlo_reply: bytes, smtputf8: bool = False) -> bytes:
    conn = ready(ehlo_reply)
    env = envelope(smtputf8=smtputf8)
    conn.start_transaction(env, [Recipient("r@x.test", orcpt=orcpt)], b"x\r\n")
    return sent(conn).split(b"\r\n")[1]


DSN = ehlo("PIPELINING", "DSN")
DSN_UTF8 = ehlo("PIPELINING", "DSN", "SMTPUTF8")


def test_an_orcpt_address_may_hold_a_semicolon() -> None:
    line = rcpt_line("rfc822;odd;user@x.test", ehlo_reply=DSN)
    assert line == b"RCPT TO:<r@x.test> ORCPT=rfc822;odd;user@x.test"


@pytest.mark.parametrize("orcpt", ["rfc 822;user@x.test", "rfc822;", "rfc822", ";user@x.test"])
def test_a_malformed_orcpt_is_left_out(orcpt: str) -> None:
    assert rcpt_line(orcpt, ehlo_reply=DSN) == b"RCPT TO:<r@x.test>"


def test_a_utf8_orcpt_in_ascii_is_passed_on_as_received_to_any_dsn_peer() -> None:
    line = rcpt_line("UTF-8;caf\\x{E9}@x.test", ehlo_reply=DSN)
    assert line == b"RCPT TO:<r@x.test> ORCPT=utf-8;caf\\x{E9}@x.test"


def test_a_non_ascii_utf8_orcpt_is_kept_as_received_in_an_smtputf8_transaction() -> None:
    line = rcpt_line("utf-8;ü\\x{2B}@x.test", ehlo_reply=DSN_UTF8, smtputf8=True)
    assert line == "RCPT TO:<r@x.test> ORCPT=utf-8;ü\\x{2B}@x.test".encode()


@pytest.mark.parametrize("orcpt", ["utf-8;ü@x.test", "rfc822;ü@x.test"])
def test_a_non_ascii_orcpt_is_left_out_of_an_ascii_transaction(orcpt: str) -> None:
    # the peer offers SMTPUTF8, but this transaction does not use it
    assert rcpt_line(orcpt, ehlo_reply=DSN_UTF8) == b"RCPT TO:<r@x.test>"
