"""The sans-I/O client in LMTP mode (RFC 2033): LHLO, pipelined MAIL/RCPT/DATA, and one
reply per accepted recipient after the data, each settling only its own recipient."""

from __future__ import annotations

import pytest

from outrider.delivery.lmtp_client import LmtpTarget
from outrider.message.envelope import Envelope, Recipient
from outrider.smtp.client import Phase, SmtpClientConnection, State, StreamedContent
from outrider.smtp.replies import Reply

LHLO_REPLY = b"250-lmtp.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"


def sent(conn: SmtpClientConnection) -> bytes:
    return b"".join(conn.data_to_send())


def ready(lhlo_reply: bytes = LHLO_REPLY) -> SmtpClientConnection:
    conn = SmtpClientConnection("mx.test", lmtp=True)
    conn.receive_data(b"220 lmtp.test LMTP\r\n")
    assert sent(conn) == b"LHLO mx.test\r\n"
    conn.receive_data(lhlo_reply)
    assert conn.state is State.READY
    return conn


def rcpts(*addresses: str) -> list[Recipient]:
    return [Recipient(a) for a in addresses]


def test_one_reply_per_accepted_recipient_in_rcpt_order() -> None:
    conn = ready()
    rs = rcpts("a@x.test", "b@x.test", "c@x.test", "d@x.test")
    tx = conn.start_transaction(Envelope("Q1", "s@y.test", [], 0.0), rs, b"hi\r\n")
    assert conn.last_transaction is tx
    assert sent(conn) == (
        b"MAIL FROM:<s@y.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n"
        b"RCPT TO:<c@x.test>\r\nRCPT TO:<d@x.test>\r\nDATA\r\n"
    )
    conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n250 ok\r\n")
    conn.receive_data(b"354 go\r\n")
    assert sent(conn) == b"hi\r\n.\r\n"
    assert tx.accepted == [0, 1, 3]
    conn.receive_data(b"250 2.0.0 a done\r\n")
    assert not tx.done and conn.awaiting is Phase.DATA_DONE
    conn.receive_data(b"452 4.2.2 b over quota\r\n552 5.2.2 d full for good\r\n")
    assert tx.done and conn.state is State.READY
    assert [str(r) for r in tx.final_replies()] == [
        "250 2.0.0 a done",
        "452 4.2.2 b over quota",
        "550 5.1.1 no such user",
        "552 5.2.2 d full for good",
    ]
    # The session is reused: RSET first, pipelined with the next transaction.
    conn.start_transaction(Envelope("Q2", "", [], 0.0), rcpts("e@x.test"), b"x\r\n")
    assert sent(conn).startswith(b"RSET\r\nMAIL FROM:<>\r\n")


def test_a_lost_session_keeps_the_replies_already_given() -> None:
    conn = ready()
    rs = rcpts("a@x.test", "b@x.test")
    tx = conn.start_transaction(Envelope("Q1", "s@y.test", [], 0.0), rs, b"hi\r\n")
    conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 a done\r\n")
    conn.abort(Reply(451, "4.4.2", "Connection lost"))
    assert tx.done
    assert [r.code for r in tx.final_replies()] == [250, 451]


def test_streamed_content_gets_per_recipient_replies() -> None:
    conn = ready()
    rs = rcpts("a@x.test", "b@x.test")
    tx = conn.start_transaction(Envelope("Q1", "s@y.test", [], 0.0), rs, StreamedContent(7))
    sent(conn)
    conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert tx.wants_content
    conn.send_content(b".a\r\n")
    conn.send_content(b"b\r\n")
    conn.end_content()
    assert sent(conn) == b"..a\r\nb\r\n.\r\n"
    conn.receive_data(b"550 5.1.1 gone meanwhile\r\n250 2.0.0 ok\r\n")
    assert tx.done and [r.code for r in tx.final_replies()] == [550, 250]


def test_lhlo_refused_is_no_helo_fallback() -> None:
    conn = SmtpClientConnection("mx.test", lmtp=True)
    conn.receive_data(b"220 lmtp.test\r\n")
    sent(conn)
    conn.receive_data(b"500 5.5.1 what\r\n")
    assert conn.state is State.REFUSED and sent(conn) == b""


def test_smtp_mode_is_unchanged_one_reply_for_all() -> None:
    conn = SmtpClientConnection("mx.test")
    conn.receive_data(b"220 mx.test\r\n")
    assert sent(conn) == b"EHLO mx.test\r\n"
    conn.receive_data(b"250-mx.test\r\n250 PIPELINING\r\n")
    rs = rcpts("a@x.test", "b@x.test")
    tx = conn.start_transaction(Envelope("Q1", "s@y.test", [], 0.0), rs, b"hi\r\n")
    conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n")
    assert tx.done and [str(r) for r in tx.final_replies()] == ["250 2.0.0 queued"] * 2


def test_targets_parse() -> None:
    assert LmtpTarget.parse("127.0.0.1:24") == LmtpTarget(host="127.0.0.1", port=24)
    assert LmtpTarget.parse("[::1]:24") == LmtpTarget(host="::1", port=24)
    assert LmtpTarget.parse("[::1]:24").describe() == "[::1]:24"
    assert LmtpTarget.parse("dovecot.internal:24").describe() == "dovecot.internal:24"
    assert LmtpTarget.parse("unix:/run/dovecot/lmtp") == LmtpTarget(path="/run/dovecot/lmtp")
    for bad in ("", "host", "host:0", "host:99999", "::1:24", "unix:relative", "[nope]:24"):
        with pytest.raises(ValueError):
            LmtpTarget.parse(bad)
