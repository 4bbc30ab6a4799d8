"""Streamed content in the sans-I/O client: dot-stuffing piece by piece gives the octets
of the one-shot stuffing however the body is cut; DATA and BDAT dialogues with the
body fed by the driver; replies that come before the content is all sent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outrider.smtp.client import (
    DotStuffer,
    SmtpClientConnection,
    State,
    StreamedContent,
    Transaction,
    dot_stuff,
)
from tests.unit.smtp.test_client import FULL_EHLO, ehlo, envelope, finals, rcpts, ready, sent

# Bodies rich in what matters: line ends (bare or not), periods at line starts.
ATOMS = st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"..", b"\r\n.", b"a", b"bc", b"\xe9"])
bodies = st.lists(ATOMS, max_size=60).map(b"".join) | st.binary(max_size=300)


def stuffed_in_pieces(body: bytes, cuts: list[int]) -> bytes:
    stuffer = DotStuffer()
    out, start = [], 0
    for cut in [*sorted(set(cuts)), len(body)]:
        out.append(stuffer.feed(body[start:cut]))
        start = cut
    out.append(stuffer.end())
    return b"".join(out)


@settings(deadline=None)
@given(body=bodies, data=st.data())
def test_stuffing_in_pieces_is_byte_identical_to_one_shot(body: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=12))
    assert stuffed_in_pieces(body, cuts) == b"".join(dot_stuff(body))


@settings(deadline=None)
@given(body=bodies, size=st.integers(1, 7))
def test_stuffing_in_fixed_chunks_is_byte_identical(body: bytes, size: int) -> None:
    cuts = list(range(size, len(body), size))
    assert stuffed_in_pieces(body, cuts) == b"".join(dot_stuff(body))


@pytest.mark.parametrize(
    ("pieces", "wire"),
    [
        ([b"a\r\n", b".b\r\n"], b"a\r\n..b\r\n.\r\n"),  # a period after a cut line end
        ([b"a\r", b"\n.b"], b"a\r\n..b\r\n.\r\n"),  # CR and LF on both sides of a cut
        ([b"a\r", b"x"], b"a\r\nx\r\n.\r\n"),  # a bare CR before a cut is normalised
        ([b"", b""], b".\r\n"),
        ([b".", b""], b"..\r\n.\r\n"),
    ],
)
def test_cuts_that_matter(pieces: list[bytes], wire: bytes) -> None:
    stuffer = DotStuffer()
    assert b"".join(stuffer.feed(p) for p in pieces) + stuffer.end() == wire


def stream(conn: SmtpClientConnection, tx: Transaction, *pieces: bytes) -> bytes:
    assert tx.wants_content
    out = b""
    for piece in pieces:
        conn.send_content(piece)
        out += sent(conn)
    conn.end_content()
    return out + sent(conn)


def test_streamed_data_dialogue() -> None:
    conn = ready(ehlo("PIPELINING", "SIZE 100"))
    body = [b"Subject: s\r\n\r\n", b".hidden\r\n", b"end\r\n"]
    tx = conn.start_transaction(envelope(), rcpts("a@x.test"), StreamedContent(28))
    assert sent(conn) == b"MAIL FROM:<s@a.test> SIZE=28\r\nRCPT TO:<a@x.test>\r\nDATA\r\n"
    assert not tx.wants_content
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert stream(conn, tx, *body) == b"Subject: s\r\n\r\n..hidden\r\nend\r\n.\r\n"
    assert not tx.done
    conn.receive_data(b"250 2.0.0 queued\r\n")
    assert tx.done and finals(tx) == ["250 2.0.0 queued"]
    assert conn.state is State.READY


def test_streamed_bdat_dialogue_sends_one_last_chunk() -> None:
    conn = ready()
    tx = conn.start_transaction(envelope(), rcpts("a@x.test"), StreamedContent(10))
    assert sent(conn) == b"MAIL FROM:<s@a.test> SIZE=10\r\nRCPT TO:<a@x.test>\r\n"
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    assert sent(conn) == b"BDAT 10 LAST\r\n"
    assert stream(conn, tx, b".abc\r\n", b".de\n") == b".abc\r\n.de\n"  # as is: no stuffing
    conn.receive_data(b"250 2.0.0 ok\r\n")
    assert finals(tx) == ["250 2.0.0 ok"]


def test_a_streamed_body_over_the_peer_size_is_refused_locally() -> None:
    conn = ready(FULL_EHLO)  # SIZE 1000
    tx = conn.start_transaction(envelope(), rcpts("a@x.test"), StreamedContent(1001))
    assert tx.done and finals(tx)[0].startswith("552 5.3.4")
    assert sent(conn) == b""


def test_nobody_accepted_means_no_content_is_wanted() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test"), StreamedContent(5))
    sent(conn)
    conn.receive_data(b"250 ok\r\n550 no\r\n354 go\r\n")
    assert not tx.wants_content
    assert sent(conn) == b".\r\n"  # the empty body the 354 makes us send


def test_a_refusal_before_the_end_of_the_content_ends_the_connection() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test"), StreamedContent(100))
    sent(conn)
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    conn.send_content(b"part\r\n")
    conn.receive_data(b"552 5.3.4 too big\r\n")
    assert tx.done and finals(tx) == ["552 5.3.4 too big"]
    assert conn.state is State.FAILED  # the rest would be read as commands


def test_a_250_before_the_end_of_the_content_is_not_a_delivery() -> None:
    conn = ready(ehlo("PIPELINING"))
    tx = conn.start_transaction(envelope(), rcpts("a@x.test"), StreamedContent(100))
    sent(conn)
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    conn.receive_data(b"250 2.0.0 thanks\r\n")
    assert tx.done and finals(tx)[0].startswith("451 4.5.0")
    assert conn.state is State.FAILED


def test_content_must_match_the_announced_size() -> None:
    conn = ready()
    tx = conn.start_transaction(envelope(), rcpts("a@x.test"), StreamedContent(4))
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    sent(conn)
    with pytest.raises(RuntimeError):
        conn.send_content(b"12345")
    with pytest.raises(RuntimeError):
        conn.end_content()  # 5 counted, 4 announced
    assert tx.wants_content


def test_content_is_refused_when_not_wanted() -> None:
    conn = ready()
    conn.start_transaction(envelope(), rcpts("a@x.test"), b"in memory\r\n")
    with pytest.raises(RuntimeError):
        conn.send_content(b"x")
