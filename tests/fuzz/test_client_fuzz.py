"""Fuzz the SMTP client's side: the reply parser, EHLO capabilities, the client state machine.

Everything here reads what a remote server sends, which may be anything. The parser
must return replies or raise :class:`SmtpProtocolError` and keep a bounded buffer;
the connection must never raise on remote input (it fails the connection instead),
settle every recipient of a transaction it ends, and write only well-formed commands.
"""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from outrider.message.envelope import Envelope, Notify, Recipient, Ret
from outrider.smtp.client import (
    Extensions,
    ReplyParser,
    SmtpClientConnection,
    SmtpProtocolError,
    State,
    dot_stuff,
)
from outrider.smtp.replies import Reply
from tests.fuzz.harness import fuzz_target
from tests.fuzz.seeds import REPLY_SEEDS
from tests.fuzz.smtp_streams import cut_points, split

ENHANCED = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
COMMAND = re.compile(rb"[^\r\n]*\r\n")

codes = st.integers(min_value=200, max_value=599)
reply_texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40
)
line_pieces = st.one_of(
    st.sampled_from([b"250", b"250-", b"250 ", b"220 ", b"354 ", b"421 ", b"550-5.1.1 ", b"25"]),
    st.sampled_from([b"SIZE 1000", b"SIZE", b"PIPELINING", b"5.7.1 x", b"\xc2\xb2", b"\xff"]),
    st.sampled_from([b"\r\n", b"\n", b"\r", b" ", b"-"]),
    st.binary(max_size=12),
)
reply_streams = st.one_of(
    st.lists(line_pieces, max_size=24).map(b"".join),
    st.lists(st.sampled_from(REPLY_SEEDS), max_size=6).map(b"".join),
    st.binary(max_size=200),
)
limits = st.tuples(st.sampled_from([8, 16, 64, 4096]), st.sampled_from([1, 2, 8, 256]))


def parse_all(data: bytes, max_line: int, max_lines: int) -> list[Reply] | None:
    """Every reply in ``data`` fed in one read, or None when the parser refuses it."""
    try:
        return ReplyParser(max_line_length=max_line, max_lines=max_lines).feed(data)
    except SmtpProtocolError:
        return None


def check_reply(reply: Reply) -> None:
    assert 200 <= reply.code <= 599
    # A CR before the line's final CRLF ("250 ok\r\r\n") stays in the text: not checked.
    assert reply.enhanced == "" or (
        ENHANCED.fullmatch(reply.enhanced) and reply.enhanced[0] == str(reply.code)[0]
    )


@given(reply_streams, cut_points, limits)
@example(b"250-mx\r\n250 SIZE \xc2\xb2\r\n", [], (4096, 256))
@example(b"250 0123456789ab\r\n", [17], (16, 8))  # a full line, read split at its CR
@fuzz_target(weight=14)
def test_reply_parser_is_bounded_and_independent_of_read_boundaries(
    data: bytes, cuts: list[int], limit: tuple[int, int]
) -> None:
    max_line, max_lines = limit
    whole = parse_all(data, max_line, max_lines)
    parser = ReplyParser(max_line_length=max_line, max_lines=max_lines)
    replies: list[Reply] = []
    try:
        for chunk in split(data, cuts):
            replies += parser.feed(chunk)
            assert len(parser._buf) <= max_line + 1  # an incomplete line, and its CR
            assert len(parser._texts) < max_lines
    except SmtpProtocolError:
        assert whole is None, "refused in pieces, accepted whole"
        return
    assert whole == replies, "the same bytes parsed differently in pieces"
    for reply in replies:
        check_reply(reply)
        Extensions.from_ehlo(reply)  # capabilities from any 250 text: never raises


replies = st.builds(
    Reply,
    codes,
    st.one_of(
        st.just(""),
        st.tuples(st.integers(0, 999), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]}"),
    ),
    st.lists(reply_texts, min_size=1, max_size=4).map("\n".join),
)


def with_class(reply: Reply) -> Reply:
    """The enhanced code made to agree with the reply's class, as a server would send it."""
    if not reply.enhanced or reply.code // 100 not in (2, 4, 5):
        return Reply(reply.code, "", reply.text)
    return Reply(reply.code, f"{reply.code // 100}.{reply.enhanced}", reply.text)


@given(replies.map(with_class))
@fuzz_target(weight=9)
def test_replies_round_trip_through_the_wire(reply: Reply) -> None:
    wire = reply.to_bytes()
    (parsed,) = ReplyParser().feed(wire)
    check_reply(parsed)
    assert parsed.code == reply.code
    assert len(parsed.lines()) == len(reply.lines())
    assert parsed.to_bytes() == wire or not reply.enhanced  # stable once it has a code
    (again,) = ReplyParser().feed(parsed.to_bytes())
    assert again == parsed
    clean = all(line == line.strip() and line for line in reply.lines())
    if clean and reply.enhanced:
        assert parsed == reply


ehlo_keywords = st.lists(
    st.one_of(
        st.sampled_from(["PIPELINING", "SIZE", "SIZE 0", "SIZE 1000", "SIZE x", "size 12", "DSN"]),
        st.sampled_from(["SIZE \u00b2", "SIZE \u0661\u0662", "STARTTLS", "AUTH PLAIN", " ", ""]),
        reply_texts,
    ),
    max_size=8,
)


@given(ehlo_keywords)
@fuzz_target(weight=3)
def test_ehlo_capabilities_never_raise(lines: list[str]) -> None:
    reply = Reply(250, "", "\n".join(["mx.test Hello", *lines]))
    ext = Extensions.from_ehlo(reply)
    words = [line.strip().partition(" ") for line in lines]
    offered = {keyword.upper(): params.strip() for keyword, _, params in words if keyword}
    assert ext.pipelining == ("PIPELINING" in offered)
    if "SIZE" not in offered:
        assert ext.size is None
    elif re.fullmatch(r"[0-9]+", offered["SIZE"]):
        assert ext.size == int(offered["SIZE"])
    else:
        assert ext.size == 0


# --- the client connection -------------------------------------------------------------

SERVER_REPLIES = [
    b"220 mx.test ESMTP\r\n",
    b"250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-DSN\r\n250-SMTPUTF8\r\n"
    b"250-STARTTLS\r\n250-8BITMIME\r\n250 SIZE 100\r\n",
    b"250 mx.test\r\n",
    b"250 2.1.0 OK\r\n",
    b"250 2.1.5 OK\r\n",
    b"354 go ahead\r\n",
    b"250 2.0.0 queued\r\n",
    b"220 2.0.0 Ready to start TLS\r\n",
    b"221 2.0.0 bye\r\n",
    b"421 4.7.0 closing\r\n",
    b"450 4.2.1 later\r\n",
    b"452 4.5.3 too many\r\n",
    b"550 5.1.1 no such user\r\n",
    b"552 5.3.4 too big\r\n",
    b"554 5.7.1 go away\r\n",
    b"500 5.5.2 what\r\n",
    b"334 VXNlcm5hbWU6\r\n",
    b"250-mx.test\r\n251 mixed\r\n",
    b"garbage\r\n",
    b"250-",
    b"\r\n",
]
server_moves = st.one_of(st.sampled_from(SERVER_REPLIES), st.binary(max_size=20))
addresses = st.sampled_from(
    ["u@d.test", "", "\u00fc@d.test", "a\r\nRCPT TO:<x@y>", "a\x00b@d.test", "p+q=r@d.test"]
)
recipients = st.builds(
    Recipient,
    addresses,
    orcpt=st.sampled_from([None, "rfc822;u@d.test", "utf-8;\u00fc@d.test", "bad", "x;"]),
    notify=st.sampled_from([None, Notify.NEVER, Notify.SUCCESS | Notify.FAILURE]),
)
envelopes = st.builds(
    Envelope,
    queue_id=st.just("Q1"),
    sender=addresses,
    recipients=st.just([]),
    received_at=st.just(0.0),
    ret=st.sampled_from([None, Ret.FULL, Ret.HDRS]),
    envid=st.sampled_from([None, "id+1", "\u00e9 x"]),
    smtputf8=st.booleans(),
    body_8bit=st.booleans(),
)
bodies = st.sampled_from([b"", b"Subject: x\r\n\r\nhi\r\n", b".\r\n.x\n\r.", b"x" * 200])


def check_commands(chunks: list[bytes], body: bytes) -> None:
    """Commands are single CRLF lines; only the message content may be anything else."""
    content = {body, *dot_stuff(body)}  # a BDAT chunk, or DATA's stuffed body and its end
    for chunk in chunks:
        assert chunk in content or COMMAND.fullmatch(chunk), chunk


@given(
    st.lists(st.tuples(server_moves, st.integers(0, 3)), max_size=25),
    envelopes,
    st.lists(recipients, min_size=1, max_size=4),
    bodies,
)
@fuzz_target(weight=1)
def test_client_never_raises_on_remote_input(
    moves: list[tuple[bytes, int]], envelope: Envelope, rcpts: list[Recipient], body: bytes
) -> None:
    conn = SmtpClientConnection("client.test")
    transactions = []
    for data, action in moves:
        conn.receive_data(data)
        check_commands(conn.data_to_send(), body)
        if conn.state is State.READY and not conn.awaiting:
            if action == 0:
                transactions.append(conn.start_transaction(envelope, rcpts, body))
            elif action == 1 and not conn.tls_active:
                conn.starttls()
            elif action == 2:
                conn.quit()
        elif conn.state is State.TLS_PENDING and action != 3:
            conn.tls_established()
        check_commands(conn.data_to_send(), body)
        if conn.state in (State.FAILED, State.CLOSED):
            assert not conn.awaiting and conn._tx is None
        if conn.state is State.FAILED:
            assert conn.error is not None
    conn.abort(Reply(451, "4.4.2", "connection lost"))
    for tx in transactions:
        assert tx.done
        for reply in tx.final_replies():
            check_reply(reply)
