"""Scripted dialogues against the sans-I/O SMTP server: bytes in, events and replies out."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from outrider.message.envelope import Notify, Ret
from outrider.smtp.replies import Reply
from outrider.smtp.server import (
    ConnectionClosed,
    Event,
    Hello,
    MailFrom,
    MessageAborted,
    MessageComplete,
    MessageData,
    ProtocolUsageError,
    RcptTo,
    ServerConfig,
    ServerConnection,
    TransactionReset,
)

Verdict = Reply | str | None  # Reply: reject; str: accept with text; None: accept
Decider = Callable[[Event], Verdict]
DECISIONS = (Hello, MailFrom, RcptTo, MessageComplete)


def drain(conn: ServerConnection, decide: Decider | None = None) -> list[Event]:
    events: list[Event] = []
    while (event := conn.next_event()) is not None:
        events.append(event)
        if isinstance(event, DECISIONS):
            verdict = decide(event) if decide else None
            if isinstance(verdict, Reply):
                conn.reject(verdict)
            else:
                conn.accept(verdict)
    return events


def feed(
    conn: ServerConnection, data: bytes | Iterable[bytes], decide: Decider | None = None
) -> tuple[list[Event], bytes]:
    """Feed one or several reads, answering every decision; return events and output."""
    events: list[Event] = []
    for chunk in [data] if isinstance(data, bytes) else data:
        conn.receive_data(chunk)
        events += drain(conn, decide)
    return events, conn.data_to_send()


def pieces(*parts: bytes) -> list[bytes]:
    """Reads for ``feed``, dropping empty ones (an empty read is EOF)."""
    return [p for p in parts if p]


def replies(out: bytes) -> list[str]:
    """Final lines of each reply, e.g. ["250 2.1.0 OK", "354 End data ..."]."""
    lines = out.decode().split("\r\n")
    assert lines[-1] == ""
    return [line for line in lines[:-1] if line[3:4] != "-"]


def codes(out: bytes) -> list[str]:
    """Code and enhanced code of each reply, e.g. ["250 2.1.0", "354"]."""
    return [" ".join(r.split(" ")[:2]) if r[4:5].isdigit() else r[:3] for r in replies(out)]


def data_of(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, MessageData))


def kinds(events: list[Event]) -> list[type]:
    return [type(e) for e in events if not isinstance(e, MessageData)]


def make(**kwargs: int) -> ServerConnection:
    return ServerConnection(ServerConfig("mx.test", **kwargs))  # type: ignore[arg-type]


def session(**kwargs: int) -> ServerConnection:
    """A connection past the greeting and an accepted EHLO."""
    conn = make(**kwargs)
    conn.send_greeting()
    feed(conn, b"EHLO client.test\r\n")
    return conn


def in_transaction(**kwargs: int) -> ServerConnection:
    conn = session(**kwargs)
    feed(conn, b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n")
    return conn


ENVELOPE = b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"


# --- greeting and hello -------------------------------------------------------------


def test_greeting() -> None:
    conn = make()
    conn.send_greeting()
    assert conn.data_to_send() == b"220 mx.test ESMTP Outrider\r\n"


def test_ehlo_lists_extensions() -> None:
    conn = make(max_message_size=1000)
    events, out = feed(conn, b"EHLO client.test\r\n")
    assert events == [Hello("client.test", True)]
    assert out.decode().split("\r\n") == [
        "250-mx.test Hello client.test",
        "250-PIPELINING",
        "250-SIZE 1000",
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250-ENHANCEDSTATUSCODES",
        "250-CHUNKING",
        "250-BINARYMIME",
        "250 DSN",
        "",
    ]


def test_helo_single_line_and_accept_text() -> None:
    conn = make()
    events, out = feed(conn, b"helo  old.test \r\n", lambda e: "pleased to meet you")
    assert events == [Hello("old.test", False)]
    assert out == b"250 mx.test pleased to meet you\r\n"


@pytest.mark.parametrize("line", [b"EHLO\r\n", b"EHLO   \r\n", b"HELO\r\n"])
def test_hello_needs_a_name(line: bytes) -> None:
    events, out = feed(make(), line)
    assert events == []
    assert codes(out) == ["501 5.5.4"]


def test_rejected_hello_does_not_greet() -> None:
    conn = make()
    _, out = feed(conn, b"EHLO bad\r\n", lambda e: Reply(550, "5.7.1", "Go away"))
    assert out == b"550 5.7.1 Go away\r\n"
    _, out = feed(conn, b"MAIL FROM:<a@x.test>\r\n")
    assert codes(out) == ["503 5.5.1"]


def test_ehlo_mid_transaction_resets() -> None:
    conn = in_transaction()
    events, out = feed(conn, b"EHLO again.test\r\n")
    assert events == [TransactionReset(), Hello("again.test", True)]
    assert conn.transaction is None
    assert out.startswith(b"250-mx.test")


# --- automatic commands -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"NOOP\r\n", "250 2.0.0"),
        (b"noop anything goes\r\n", "250 2.0.0"),
        (b"RSET\r\n", "250 2.0.0"),
        (b"VRFY someone\r\n", "252 2.5.2"),
        (b"EXPN list\r\n", "502 5.5.1"),
        (b"HELP\r\n", "214 2.0.0"),
        (b"FOO bar\r\n", "500 5.5.2"),
        (b"MAILX FROM:<a@b>\r\n", "500 5.5.2"),
        (b"\r\n", "500 5.5.2"),
        (b"STARTTLS\r\n", "502 5.5.1"),
        (b"RSET now\r\n", "501 5.5.4"),
        (b"VRFY\r\n", "501 5.5.4"),
    ],
)
def test_automatic_replies(line: bytes, expected: str) -> None:
    events, out = feed(session(), line)
    assert events == []
    assert codes(out) == [expected]


def test_vrfy_text() -> None:
    _, out = feed(session(), b"VRFY root\r\n")
    assert out == b"252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n"


def test_quit() -> None:
    conn = session()
    events, out = feed(conn, b"QUIT\r\nNOOP\r\n")
    assert events == [ConnectionClosed()]
    assert out == b"221 2.0.0 mx.test closing connection\r\n"
    assert conn.closed
    conn.receive_data(b"NOOP\r\n")
    assert conn.next_event() is None
    assert conn.data_to_send() == b""


def test_quit_mid_transaction_resets() -> None:
    events, out = feed(in_transaction(), b"QUIT\r\n")
    assert events == [TransactionReset(), ConnectionClosed()]
    assert codes(out) == ["221 2.0.0"]


def test_rset_resets_open_transaction_only() -> None:
    conn = in_transaction()
    events, out = feed(conn, b"RSET\r\n")
    assert events == [TransactionReset()]
    assert codes(out) == ["250 2.0.0"]
    events, _ = feed(conn, b"RSET\r\n")
    assert events == []


def test_commands_are_case_insensitive() -> None:
    conn = make()
    events, out = feed(
        conn, b"ehlo c\r\nmail from:<a@x.test>\r\nrCpT tO:<b@y.test>\r\ndata\r\n.\r\nquit\r\n"
    )
    assert kinds(events) == [Hello, MailFrom, RcptTo, MessageComplete, ConnectionClosed]
    assert codes(out)[1:] == ["250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "221 2.0.0"]


# --- sequence errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "line"),
    [
        (make, b"MAIL FROM:<a@x.test>\r\n"),
        (session, b"RCPT TO:<b@y.test>\r\n"),
        (session, b"DATA\r\n"),
        (in_transaction, b"MAIL FROM:<c@x.test>\r\n"),
    ],
)
def test_bad_sequence(setup: Callable[[], ServerConnection], line: bytes) -> None:
    events, out = feed(setup(), line)
    assert events == []
    assert codes(out) == ["503 5.5.1"]


def test_data_before_any_rcpt_is_bad_sequence() -> None:
    conn = session()
    feed(conn, b"MAIL FROM:<a@x.test>\r\n")
    _, out = feed(conn, b"DATA\r\n")
    assert codes(out) == ["503 5.5.1"]


def test_data_without_accepted_recipient() -> None:
    conn = session()
    deny = Reply(550, "5.1.1", "No such user")
    events, out = feed(conn, ENVELOPE, lambda e: deny if isinstance(e, RcptTo) else None)
    assert kinds(events) == [MailFrom, RcptTo]
    assert replies(out) == [
        "250 2.1.0 OK",
        "550 5.1.1 No such user",
        "554 5.5.1 No valid recipients",
    ]


def test_data_with_argument() -> None:
    _, out = feed(in_transaction(), b"DATA now\r\n")
    assert codes(out) == ["501 5.5.4"]


# --- MAIL / RCPT ---------------------------------------------------------------------


def test_mail_and_rcpt_events_and_transaction() -> None:
    conn = session()
    events, out = feed(
        conn,
        b"MAIL FROM: <Sender@X.test> SIZE=100 BODY=8bitmime RET=hdrs ENVID=id+2B1\r\n"
        b"RCPT TO:<User@Y.test> NOTIFY=success,delay ORCPT=rfc822;user+40y.test\r\n"
        b"RCPT TO:<other@y.test>\r\n",
        lambda e: "Recipient fine" if isinstance(e, RcptTo) else "Sender fine",
    )
    assert isinstance(events[0], MailFrom)
    assert events[0].sender == "Sender@X.test"
    assert events[0].params.size == 100
    assert events[0].params.body == "8BITMIME"
    assert events[0].params.ret is Ret.HDRS
    assert events[0].params.envid == "id+1"
    assert isinstance(events[1], RcptTo)
    assert events[1].recipient == "User@Y.test"
    assert events[1].params.notify == Notify.SUCCESS | Notify.DELAY
    assert events[1].params.orcpt == "rfc822;user@y.test"
    assert replies(out) == [
        "250 2.1.0 Sender fine",
        "250 2.1.5 Recipient fine",
        "250 2.1.5 Recipient fine",
    ]
    txn = conn.transaction
    assert txn is not None
    assert txn.sender == "Sender@X.test"
    assert [r.address for r in txn.recipients] == ["User@Y.test", "other@y.test"]


def test_null_sender_source_route_and_postmaster() -> None:
    conn = session()
    events, out = feed(
        conn,
        b"MAIL FROM:<>\r\nRCPT TO:<@relay.test,@hop.test:user@dest.test>\r\n"
        b"RCPT TO:<PostMaster>\r\n",
    )
    assert [getattr(e, "sender", getattr(e, "recipient", None)) for e in events] == [
        "",
        "user@dest.test",
        "PostMaster",
    ]
    assert codes(out) == ["250 2.1.0", "250 2.1.5", "250 2.1.5"]


def test_rejected_mail_opens_no_transaction() -> None:
    conn = session()
    _, out = feed(conn, b"MAIL FROM:<a@x.test>\r\n", lambda e: Reply(451, "4.7.1", "Later"))
    assert out == b"451 4.7.1 Later\r\n"
    assert conn.transaction is None
    _, out = feed(conn, b"RCPT TO:<b@y.test>\r\n")
    assert codes(out) == ["503 5.5.1"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"MAIL FROM:a@x.test\r\n", "501 5.5.4"),
        (b"MAIL TO:<a@x.test>\r\n", "501 5.5.4"),
        (b"MAIL FROM:<a@x.test\r\n", "501 5.5.4"),
        (b"MAIL FROM:<a@x.test>SIZE=1\r\n", "501 5.5.4"),
        (b"MAIL FROM:<a@x.test> SIZE=abc\r\n", "501 5.5.4"),
        (b"MAIL FROM:<a@x.test> SIZE\r\n", "501 5.5.4"),
        (b"MAIL FROM:<a@x.test> BODY=9BIT\r\n", "501 5.5.4"),
        (b"MAIL FROM:<a@x.test> AUTH=<>\r\n", "555 5.5.4"),
        (b"MAIL FROM:<a\x00b@x.test>\r\n", "501 5.5.4"),
        (b"MAIL FROM:<a@x.test> ENVID=a\x01\r\n", "501 5.5.4"),
        (b"MAIL FROM:<a@x.test>\t\r\n", "501 5.5.4"),
        (b"MAIL FROM:<\xff@x.test>\r\n", "501 5.5.4"),
        (b"MAIL FROM:<\xc3\xa9@x.test>\r\n", "553 5.6.7"),
        (b"MAIL FROM:<a@x.test> SIZE=1001\r\n", "552 5.3.4"),
    ],
)
def test_mail_errors(line: bytes, expected: str) -> None:
    events, out = feed(session(max_message_size=1000), line)
    assert events == []
    assert codes(out) == [expected]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"RCPT TO:<>\r\n", "501 5.5.4"),
        (b"RCPT TO:b@y.test\r\n", "501 5.5.4"),
        (b"RCPT FROM:<b@y.test>\r\n", "501 5.5.4"),
        (b"RCPT TO:<b@y.test> NOTIFY=NEVER,SUCCESS\r\n", "501 5.5.4"),
        (b"RCPT TO:<b@y.test> ORCPT=user@y.test\r\n", "501 5.5.4"),
        (b"RCPT TO:<b@y.test> FOO=bar\r\n", "555 5.5.4"),
        (b"RCPT TO:<b@[300.1.1.1]>\r\n", "501 5.5.4"),
        (b"RCPT TO:<\xd0\xbf@y.test>\r\n", "553 5.6.7"),
    ],
)
def test_rcpt_errors(line: bytes, expected: str) -> None:
    events, out = feed(in_transaction(), line)
    assert events == []
    assert codes(out) == [expected]


def test_smtputf8_addresses_with_param() -> None:
    conn = session()
    mail = "MAIL FROM:<jöran@bücher.test> SMTPUTF8\r\nRCPT TO:<用户@例子.test>\r\n"
    events, out = feed(conn, mail.encode())
    assert isinstance(events[0], MailFrom) and events[0].params.smtputf8
    assert events[0].sender == "jöran@bücher.test"
    assert isinstance(events[1], RcptTo) and events[1].recipient == "用户@例子.test"
    assert codes(out) == ["250 2.1.0", "250 2.1.5"]


def test_too_many_recipients() -> None:
    conn = session(max_recipients=2)
    events, out = feed(
        conn,
        b"MAIL FROM:<a@x.test>\r\n"
        b"RCPT TO:<1@y.test>\r\nRCPT TO:<2@y.test>\r\nRCPT TO:<3@y.test>\r\n",
    )
    assert kinds(events) == [MailFrom, RcptTo, RcptTo]
    assert codes(out) == ["250 2.1.0", "250 2.1.5", "250 2.1.5", "452 4.5.3"]


def test_rejected_recipients_do_not_count_against_limit() -> None:
    conn = session(max_recipients=1)
    deny = Reply(550, "5.1.1", "No")
    _, out = feed(
        conn,
        b"MAIL FROM:<a@x.test>\r\nRCPT TO:<1@y.test>\r\nRCPT TO:<2@y.test>\r\n",
        lambda e: deny if isinstance(e, RcptTo) and e.recipient.startswith("1") else None,
    )
    assert codes(out) == ["250 2.1.0", "550 5.1.1", "250 2.1.5"]


# --- DATA ---------------------------------------------------------------------------


BODY = b"Subject: hi\r\n\r\nline one\r\n..leading dot\r\n.\r\n"


def test_data_transaction() -> None:
    conn = session()
    events, out = feed(conn, ENVELOPE + BODY, lambda e: "OK queued as ABC")
    assert kinds(events) == [MailFrom, RcptTo, MessageComplete]
    assert data_of(events) == b"Subject: hi\r\n\r\nline one\r\n.leading dot\r\n"
    assert replies(out)[-2:] == [
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 OK queued as ABC",
    ]
    assert conn.transaction is None


def test_data_complete_rejected_ends_transaction() -> None:
    conn = session()
    refusal = Reply(554, "5.7.1", "Spam")
    verdict: Decider = lambda e: refusal if isinstance(e, MessageComplete) else None  # noqa: E731
    _, out = feed(conn, ENVELOPE + BODY, verdict)
    assert replies(out)[-1] == "554 5.7.1 Spam"
    assert conn.transaction is None
    _, out = feed(conn, b"RCPT TO:<b@y.test>\r\n")
    assert codes(out) == ["503 5.5.1"]


def test_empty_body() -> None:
    events, out = feed(in_transaction(), b"DATA\r\n.\r\n")
    assert kinds(events) == [MessageComplete]
    assert data_of(events) == b""
    assert codes(out) == ["354", "250 2.0.0"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"..\r\n.\r\n", b".\r\n"),
        (b"...\r\n.\r\n", b"..\r\n"),
        (b".x\r\n.y\r\n.\r\n", b"x\r\ny\r\n"),
        (b"a\r\n..\r\n..b\r\nc.\r\n.\r\n", b"a\r\n.\r\n.b\r\nc.\r\n"),
        (b"\r\n\r\n.\r\n", b"\r\n\r\n"),
    ],
)
def test_dot_unstuffing(body: bytes, expected: bytes) -> None:
    events, _ = feed(in_transaction(), b"DATA\r\n" + body)
    assert data_of(events) == expected
    assert kinds(events) == [MessageComplete]


def test_data_split_at_every_position() -> None:
    stream = b"DATA\r\n" + b"Subject: x\r\n\r\n..a\r\nb\r\n.c\r\n\r\n.\r\nNOOP\r\n"
    reference, ref_out = feed(in_transaction(), stream)
    assert data_of(reference) == b"Subject: x\r\n\r\n.a\r\nb\r\nc\r\n\r\n"
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            events, out = feed(in_transaction(), pieces(stream[:i], stream[i:j], stream[j:]))
            assert data_of(events) == data_of(reference), (i, j)
            assert kinds(events) == [MessageComplete]
            assert out == ref_out


def test_data_is_streamed_not_buffered() -> None:
    conn = in_transaction()
    feed(conn, b"DATA\r\n")
    events, _ = feed(conn, b"first line\r\nsecond li")
    assert data_of(events) == b"first line\r\n"
    events, _ = feed(conn, b"ne\r\n")
    assert data_of(events) == b"second line\r\n"
    events, _ = feed(conn, b".\r\n")
    assert kinds(events) == [MessageComplete]


def test_pipelined_command_after_terminator_waits_for_decision() -> None:
    conn = in_transaction()
    conn.receive_data(b"DATA\r\nbody\r\n.\r\nNOOP\r\n")
    assert isinstance(conn.next_event(), MessageData)
    assert isinstance(conn.next_event(), MessageComplete)
    assert conn.next_event() is None
    assert codes(conn.data_to_send()) == ["354"]
    conn.accept()
    assert conn.next_event() is None
    assert codes(conn.data_to_send()) == ["250 2.0.0", "250 2.0.0"]


def test_message_over_size_is_consumed_then_aborted() -> None:
    conn = in_transaction(max_message_size=100)
    line = b"x" * 48 + b"\r\n"  # 50 octets
    events, out = feed(conn, [b"DATA\r\n", line * 2, line, line * 40, b".\r\nNOOP\r\n"])
    assert data_of(events) == line * 2
    aborted = [e for e in events if isinstance(e, MessageAborted)]
    assert aborted == [MessageAborted(Reply(552, "5.3.4", aborted[0].reply.text))]
    assert codes(out) == ["354", "552 5.3.4", "250 2.0.0"]
    assert conn.transaction is None


def test_body_exactly_at_size_limit_is_accepted() -> None:
    conn = in_transaction(max_message_size=100)
    events, _ = feed(conn, b"DATA\r\n" + (b"x" * 48 + b"\r\n") * 2 + b".\r\n")
    assert kinds(events) == [MessageComplete]


@pytest.mark.parametrize("chunks", [1, 7, 1000])
def test_data_line_too_long(chunks: int) -> None:
    conn = in_transaction()
    long_body = b"ok\r\n" + b"y" * 5000 + b"\r\nafter\r\n.\r\n"
    step = max(1, len(long_body) // chunks)
    pieces = [long_body[i : i + step] for i in range(0, len(long_body), step)]
    events, out = feed(conn, [b"DATA\r\n", *pieces])
    assert events[-1] == MessageAborted(
        Reply(554, "5.6.0", "Message has a line longer than 1000 octets")
    )
    assert b"y" * 999 not in data_of(events)
    assert replies(out)[-1] == "554 5.6.0 Message has a line longer than 1000 octets"
    assert len(conn._buf) - conn._pos < 1100


@pytest.mark.parametrize(("length", "ok"), [(998, True), (999, False), (1100, False)])
def test_data_line_length_boundary(length: int, ok: bool) -> None:
    events, _ = feed(in_transaction(), b"DATA\r\n" + b"z" * length + b"\r\n.\r\n")
    assert kinds(events) == ([MessageComplete] if ok else [MessageAborted])


BARE_VARIANTS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\r", b"\r.\r\n", b"\r\n.\n"]
SMUGGLED = b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nsmuggled body\r\n"


@pytest.mark.parametrize("fake", BARE_VARIANTS)
def test_smtp_smuggling_is_refused(fake: bytes) -> None:
    conn = in_transaction()
    stream = b"DATA\r\nbody" + fake + SMUGGLED + b".\r\nNOOP\r\n"
    events, out = feed(conn, stream)
    assert not any(isinstance(e, MailFrom | RcptTo | MessageComplete) for e in events)
    assert MessageAborted(Reply(554, "5.6.0", "Message contains bare CR or LF")) in events
    assert replies(out) == [
        "354 End data with <CR><LF>.<CR><LF>",
        "554 5.6.0 Message contains bare CR or LF",
        "250 2.0.0 OK",
    ]


@pytest.mark.parametrize("fake", BARE_VARIANTS)
def test_smtp_smuggling_split_everywhere(fake: bytes) -> None:
    stream = b"DATA\r\nbody" + fake + SMUGGLED + b".\r\nNOOP\r\n"
    for i in range(len(stream) + 1):
        conn = in_transaction()
        events, out = feed(conn, pieces(stream[:i], stream[i:]))
        assert kinds(events) == [MessageAborted], i
        assert b"evil" not in data_of(events), i
        assert codes(out) == ["354", "554 5.6.0", "250 2.0.0"], i


def test_smuggling_with_bare_lf_in_first_line_and_many_reads() -> None:
    conn = in_transaction()
    stream = b"DATA\r\n\n.\nMAIL FROM:<evil@x>\r\n" + b"filler\r\n" * 1000 + b".\r\n"
    events, out = feed(conn, [stream[i : i + 97] for i in range(0, len(stream), 97)])
    assert kinds(events) == [MessageAborted]
    assert data_of(events) == b""
    assert codes(out) == ["354", "554 5.6.0"]


def test_bare_line_ending_after_clean_lines_already_streamed() -> None:
    conn = in_transaction()
    events, _ = feed(conn, [b"DATA\r\nclean\r\n", b"dirty\rline\r\n", b"more\r\n.\r\n"])
    assert data_of(events) == b"clean\r\n"
    assert kinds(events) == [MessageAborted]


# --- command framing -----------------------------------------------------------------


@pytest.mark.parametrize(
    "line", [b"NOOP\nMAIL FROM:<a@b>\r\n", b"NO\rOP\r\n", b"MAIL FROM:<a@x.test>\n\r\n"]
)
def test_bare_line_ending_in_command(line: bytes) -> None:
    events, out = feed(session(), line)
    assert events == []
    assert out == b"500 5.5.2 Bare CR or LF not allowed; lines end with CRLF\r\n"


def test_command_line_too_long_is_discarded_in_pieces() -> None:
    conn = session()
    events, out = feed(conn, [b"NOOP " + b"a" * 300, b"b" * 300, b"c" * 5000, b"\r", b"\nNOOP\r\n"])
    assert events == []
    assert replies(out) == ["500 5.5.2 Line too long", "250 2.0.0 OK"]


def test_command_line_length_boundary() -> None:
    conn = session()
    ok = b"NOOP " + b"a" * 505 + b"\r\n"
    assert len(ok) == 512
    _, out = feed(conn, ok + b"NOOP " + b"a" * 506 + b"\r\n")
    assert codes(out) == ["250 2.0.0", "500 5.5.2"]


def test_command_buffer_stays_bounded() -> None:
    conn = session()
    for _ in range(1000):
        conn.receive_data(b"x" * 1024)
        assert conn.next_event() is None
        assert len(conn._buf) - conn._pos <= 1
    conn.receive_data(b"\r\n")
    assert conn.next_event() is None
    assert codes(conn.data_to_send()) == ["500 5.5.2"]


def test_pipelined_backlog_is_capped() -> None:
    conn = session(max_pipeline_backlog=1024)
    conn.receive_data(b"MAIL FROM:<a@x.test>\r\n")
    assert isinstance(conn.next_event(), MailFrom)
    conn.receive_data(b"NOOP\r\n" * 200)  # decision pending: only buffered
    conn.receive_data(b"NOOP\r\n")
    assert conn.closed
    assert conn.next_event() == ConnectionClosed()
    assert codes(conn.data_to_send()) == ["421 4.7.0"]


def test_too_many_errors_closes() -> None:
    conn = session(max_errors=3)
    events, out = feed(conn, b"BAD\r\n" * 3 + b"NOOP\r\nBAD\r\nNOOP\r\n")
    assert events == [ConnectionClosed()]
    assert replies(out)[-2:] == [
        "500 5.5.2 Syntax error, command unrecognized",
        "421 4.7.0 Too many errors",
    ]
    assert conn.closed


# --- pipelining ------------------------------------------------------------------------


def test_whole_transaction_pipelined_in_one_read() -> None:
    conn = make()
    conn.send_greeting()
    greeting = conn.data_to_send()
    stream = (
        b"EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<bad@y.test>\r\n"
        b"DATA\r\nhello\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<c@y.test>\r\nBDAT 5 LAST\r\nworldQUIT\r\n"
    )
    seen: list[Event] = []

    def decide(event: Event) -> Verdict:
        seen.append(event)
        if isinstance(event, RcptTo) and event.recipient.startswith("bad"):
            return Reply(550, "5.1.1", "Unknown user")
        return None

    conn.receive_data(stream)
    events = drain(conn, decide)
    out = conn.data_to_send()
    assert greeting.startswith(b"220 ")
    assert kinds(events) == [
        Hello, MailFrom, RcptTo, RcptTo, MessageComplete,
        MailFrom, RcptTo, MessageComplete, ConnectionClosed,
    ]  # fmt: skip
    assert [e.data for e in events if isinstance(e, MessageData)] == [b"hello\r\n", b"world"]
    assert codes(out) == [
        "250", "250 2.1.0", "250 2.1.5", "550 5.1.1", "354", "250 2.0.0",
        "250 2.1.0", "250 2.1.5", "250 2.0.0", "221 2.0.0",
    ]  # fmt: skip


def test_decision_methods_require_a_pending_decision() -> None:
    conn = session()
    with pytest.raises(ProtocolUsageError):
        conn.accept()
    conn.receive_data(b"NOOP\r\nMAIL FROM:<a@x.test>\r\n")
    with pytest.raises(ProtocolUsageError):
        conn.accept()  # the MailFrom event has not been delivered yet
    assert isinstance(conn.next_event(), MailFrom)
    with pytest.raises(ProtocolUsageError):
        conn.reject(Reply(250, "2.0.0", "not a rejection"))
    conn.accept()
    with pytest.raises(ProtocolUsageError):
        conn.reject(Reply(550, "5.0.0", "nothing to reject"))


def test_reject_with_421_closes() -> None:
    conn = session()
    events, out = feed(
        conn, b"MAIL FROM:<a@x.test>\r\nNOOP\r\n", lambda e: Reply(421, "4.7.0", "Busy")
    )
    assert kinds(events) == [MailFrom, ConnectionClosed]
    assert out == b"421 4.7.0 Busy\r\n"
    assert conn.closed


# --- BDAT ---------------------------------------------------------------------------


def test_bdat_chunks_across_reads() -> None:
    conn = in_transaction()
    stream = b"BDAT 10\r\n0123456789BDAT 7 LAST\r\nab\r\n.\rz"
    events, out = feed(conn, [stream[i : i + 3] for i in range(0, len(stream), 3)])
    assert data_of(events) == b"0123456789ab\r\n.\rz"  # binary: no unstuffing, no CR/LF checks
    assert kinds(events) == [MessageComplete]
    assert replies(out) == ["250 2.0.0 10 octets received", "250 2.0.0 OK"]
    assert conn.transaction is None


def test_bdat_zero_last() -> None:
    conn = in_transaction()
    events, out = feed(conn, [b"BDAT 3\r\nabc", b"BDAT 0 last\r\n"])
    assert data_of(events) == b"abc"
    assert kinds(events) == [MessageComplete]
    assert codes(out) == ["250 2.0.0", "250 2.0.0"]


def test_bdat_empty_message() -> None:
    events, out = feed(in_transaction(), b"BDAT 0 LAST\r\n")
    assert events == [MessageComplete()]
    assert codes(out) == ["250 2.0.0"]


def test_bdat_with_binarymime_and_data_refused() -> None:
    conn = session()
    feed(conn, b"MAIL FROM:<a@x.test> BODY=BINARYMIME\r\nRCPT TO:<b@y.test>\r\n")
    _, out = feed(conn, b"DATA\r\n")
    assert codes(out) == ["503 5.5.1"]
    events, out = feed(conn, b"BDAT 4 LAST\r\n\x00\x01\r\n")
    assert data_of(events) == b"\x00\x01\r\n"
    assert codes(out) == ["250 2.0.0"]


def test_data_after_bdat_refused() -> None:
    conn = in_transaction()
    _, out = feed(conn, b"BDAT 2\r\nabDATA\r\n")
    assert codes(out) == ["250 2.0.0", "503 5.5.1"]


def _mail_only() -> ServerConnection:
    conn = session()
    feed(conn, b"MAIL FROM:<a@x.test>\r\n")
    return conn


@pytest.mark.parametrize("setup", [session, _mail_only], ids=["no-mail", "no-rcpt"])
def test_bdat_bad_sequence_consumes_chunk(setup: Callable[[], ServerConnection]) -> None:
    conn = setup()
    events, out = feed(conn, b"BDAT 23\r\nMAIL FROM:<evil@x.te>\r\nNOOP\r\n")
    assert events == []
    assert codes(out) == ["503 5.5.1", "250 2.0.0"]


def test_bdat_without_accepted_recipient() -> None:
    conn = session()
    feed(
        conn,
        b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n",
        lambda e: Reply(550, "5.1.1", "x") if isinstance(e, RcptTo) else None,
    )
    events, out = feed(conn, b"BDAT 5 LAST\r\nhelloNOOP\r\n")
    assert events == []
    assert replies(out) == ["554 5.5.1 No valid recipients", "250 2.0.0 OK"]


@pytest.mark.parametrize("arg", [b"BDAT\r\n", b"BDAT x\r\n", b"BDAT 5 NOW\r\n", b"BDAT -1\r\n"])
def test_bdat_syntax_error_closes(arg: bytes) -> None:
    conn = in_transaction()
    events, out = feed(conn, arg + b"NOOP\r\n")
    assert events == [TransactionReset(), ConnectionClosed()]
    assert codes(out) == ["501 5.5.4", "421 4.5.0"]
    assert conn.closed


def test_bdat_over_size() -> None:
    conn = in_transaction(max_message_size=10)
    events, out = feed(conn, [b"BDAT 6\r\nabcdef", b"BDAT 6\r\nghijkl", b"BDAT 2 LAST\r\nmn"])
    assert data_of(events) == b"abcdef"
    assert kinds(events) == [MessageAborted]
    assert codes(out) == ["250 2.0.0", "552 5.3.4", "552 5.3.4"]
    assert conn.transaction is None


def test_bdat_after_last_is_bad_sequence() -> None:
    conn = in_transaction()
    _, out = feed(conn, b"BDAT 1 LAST\r\naBDAT 1\r\nb")
    assert codes(out) == ["250 2.0.0", "503 5.5.1"]


# --- closing ------------------------------------------------------------------------


def test_eof_when_idle() -> None:
    conn = session()
    events, out = feed(conn, b"")
    assert events == [ConnectionClosed()]
    assert out == b""
    assert conn.closed


def test_eof_mid_data() -> None:
    conn = in_transaction()
    events, _ = feed(conn, [b"DATA\r\npartial\r\n", b""])
    assert kinds(events) == [TransactionReset, ConnectionClosed]


def test_eof_processes_buffered_commands_first() -> None:
    conn = session()
    events, out = feed(conn, [b"NOOP\r\nMAIL FROM:<a@x.test>\r\n", b""])
    assert kinds(events) == [MailFrom, TransactionReset, ConnectionClosed]
    assert codes(out) == ["250 2.0.0", "250 2.1.0"]


def test_shutdown() -> None:
    conn = in_transaction()
    conn.shutdown()
    assert conn.closed
    assert drain(conn) == [TransactionReset(), ConnectionClosed()]
    assert (
        conn.data_to_send() == b"421 4.3.2 Service shutting down, closing transmission channel\r\n"
    )
    conn.shutdown()
    assert conn.data_to_send() == b""


def test_shutdown_while_decision_pending_makes_accept_a_no_op() -> None:
    conn = session()
    conn.receive_data(b"MAIL FROM:<a@x.test>\r\n")
    assert isinstance(conn.next_event(), MailFrom)
    conn.shutdown()
    conn.accept()
    assert codes(conn.data_to_send()) == ["421 4.3.2"]


def test_timeout() -> None:
    conn = in_transaction()
    feed(conn, b"DATA\r\npartial")
    assert conn.in_data
    conn.timeout()
    assert drain(conn) == [TransactionReset(), ConnectionClosed()]
    assert conn.data_to_send() == b"421 4.4.2 mx.test Error: timeout exceeded\r\n"
    assert not conn.in_data


def test_in_data_tracks_content_states() -> None:
    conn = in_transaction()
    assert not conn.in_data
    feed(conn, b"BDAT 4\r\nab")
    assert conn.in_data
    feed(conn, b"cd")
    assert not conn.in_data
    feed(conn, b"RSET\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
    assert conn.in_data
    feed(conn, b".\r\n")
    assert not conn.in_data


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ServerConfig("bad host")
    with pytest.raises(ValueError):
        ServerConfig("mx.test", max_command_length=4)
