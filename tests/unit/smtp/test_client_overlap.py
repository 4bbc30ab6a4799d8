"""Pipelining across messages in the sans-I/O client: the next message's MAIL, RCPT and
DATA follow the current one's end of data before its final reply (RFC 2920 3.1)."""

from __future__ import annotations

import pytest

from outrider.message.envelope import Envelope, Recipient
from outrider.smtp.client import SmtpClientConnection, State, Transaction
from outrider.smtp.replies import Reply

PIPE_EHLO = b"250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


def ready(ehlo: bytes = PIPE_EHLO, *, lmtp: bool = False) -> SmtpClientConnection:
    conn = SmtpClientConnection("client.test", lmtp=lmtp)
    conn.receive_data(b"220 mx.test ESMTP\r\n")
    conn.data_to_send()
    conn.receive_data(ehlo)
    assert conn.state is State.READY
    return conn


def sent(conn: SmtpClientConnection) -> bytes:
    return b"".join(conn.data_to_send())


def env(sender: str = "s@a.test") -> Envelope:
    return Envelope("Q1", sender, [], 0.0)


def rcpt(address: str) -> list[Recipient]:
    return [Recipient(address)]


def body_sent(conn: SmtpClientConnection, address: str, body: bytes = b"hi\r\n") -> Transaction:
    tx = conn.start_transaction(env(), rcpt(address), body)
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    return tx


def test_no_overlap_before_the_end_of_data_is_queued() -> None:
    conn = ready()
    conn.start_transaction(env(), rcpt("a@b.test"), b"hi\r\n")
    assert not conn.can_overlap  # MAIL, RCPT, DATA replies still outstanding
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    assert not conn.can_overlap
    conn.receive_data(b"354 go\r\n")
    assert conn.can_overlap


def test_next_message_follows_the_end_of_data_without_rset() -> None:
    conn = ready()
    first = conn.start_transaction(env(), rcpt("a@b.test"), b"one\r\n")
    assert sent(conn) == b"MAIL FROM:<s@a.test>\r\nRCPT TO:<a@b.test>\r\nDATA\r\n"
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    second = conn.start_transaction(env(), rcpt("c@d.test"), b"two\r\n")
    assert sent(conn) == (b"one\r\n.\r\nMAIL FROM:<s@a.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n")
    assert not conn.can_overlap  # one message pipelined behind another at most
    with pytest.raises(RuntimeError):
        conn.start_transaction(env(), rcpt("e@f.test"), b"three\r\n")
    # One round trip answers the first message and starts the second.
    conn.receive_data(b"250 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert first.done and [str(r) for r in first.final_replies()] == ["250 queued 1"]
    assert not second.done
    assert sent(conn) == b"two\r\n.\r\n"
    assert conn.can_overlap
    conn.receive_data(b"250 queued 2\r\n")
    assert second.done and second.final_replies() == [Reply(250, "", "queued 2")]
    assert conn.state is State.READY and conn.transactions == 2


def test_refused_first_message_does_not_disturb_the_second() -> None:
    conn = ready()
    first = body_sent(conn, "a@b.test")
    second = conn.start_transaction(env(), rcpt("c@d.test"), b"two\r\n")
    conn.receive_data(b"554 5.7.1 rejected\r\n250 ok\r\n550 5.1.1 unknown\r\n554 no valid\r\n")
    assert first.final_replies() == [Reply(554, "5.7.1", "rejected")]
    assert second.done and second.final_replies() == [Reply(550, "5.1.1", "unknown")]
    # The second transaction ended without an end of data: RSET leads the next group.
    conn.data_to_send()
    conn.start_transaction(env(), rcpt("e@f.test"), b"three\r\n")
    assert sent(conn).startswith(b"RSET\r\nMAIL FROM:")


def test_421_after_end_of_data_settles_both_messages() -> None:
    conn = ready()
    first = body_sent(conn, "a@b.test")
    second = conn.start_transaction(env(), rcpt("c@d.test"), b"two\r\n")
    conn.receive_data(b"421 4.3.2 shutting down\r\n")
    assert conn.state is State.FAILED
    assert first.final_replies() == second.final_replies() == [Reply(421, "4.3.2", "shutting down")]


def test_abort_settles_both_messages() -> None:
    conn = ready()
    first = body_sent(conn, "a@b.test")
    second = conn.start_transaction(env(), rcpt("c@d.test"), b"two\r\n")
    conn.abort(Reply(451, "4.4.2", "timeout"))
    assert first.done and second.done
    assert second.final_replies() == [Reply(451, "4.4.2", "timeout")]


@pytest.mark.parametrize(
    ("ehlo", "lmtp"),
    [
        (b"250-mx.test\r\n250 8BITMIME\r\n", False),  # no PIPELINING
        (b"250-mx.test\r\n250 PIPELINING\r\n", True),  # LMTP: one reply per recipient
    ],
)
def test_no_overlap_without_pipelining_or_under_lmtp(ehlo: bytes, lmtp: bool) -> None:
    conn = ready(ehlo, lmtp=lmtp)
    conn.start_transaction(env(), rcpt("a@b.test"), b"hi\r\n")
    for reply in (b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
        conn.receive_data(reply)
    assert not conn.can_overlap
    with pytest.raises(RuntimeError):
        conn.start_transaction(env(), rcpt("c@d.test"), b"two\r\n")


def test_chunking_body_in_one_group_then_next_message() -> None:
    conn = ready(b"250-mx.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
    first = conn.start_transaction(env(), rcpt("a@b.test"), b"one\r\n")
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    assert sent(conn) == b"BDAT 5 LAST\r\none\r\n"
    assert conn.can_overlap
    conn.start_transaction(env(), rcpt("c@d.test"), b"two\r\n")
    assert sent(conn) == b"MAIL FROM:<s@a.test>\r\nRCPT TO:<c@d.test>\r\n"
    conn.receive_data(b"250 done\r\n250 ok\r\n250 ok\r\n")
    assert first.final_replies() == [Reply(250, "", "done")]
    assert sent(conn) == b"BDAT 5 LAST\r\ntwo\r\n"
