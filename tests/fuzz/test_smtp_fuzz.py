"""Fuzz the SMTP server core: random command lines and bytes, DATA and BDAT framing (smuggling)."""

from __future__ import annotations

import re

from hypothesis import assume, given
from hypothesis import strategies as st

from outrider.smtp.replies import Reply
from outrider.smtp.server import (
    Event,
    Hello,
    MailFrom,
    MessageAborted,
    MessageComplete,
    MessageData,
    RcptTo,
    ServerConfig,
    ServerConnection,
)
from tests.fuzz.harness import fuzz_target
from tests.fuzz.smtp_streams import split

DECISIONS = (Hello, MailFrom, RcptTo, MessageComplete)
REPLY_LINE = re.compile(rb"[2-5][0-9][0-9][ -][^\r\n]*\r\n")


def drain(conn: ServerConnection, deny: bool = False) -> list[Event]:
    events: list[Event] = []
    while (event := conn.next_event()) is not None:
        events.append(event)
        if isinstance(event, DECISIONS):
            if deny and not isinstance(event, Hello):
                conn.reject(Reply(550, "5.7.1", "No"))
            else:
                conn.accept()
    return events


def open_transaction() -> ServerConnection:
    conn = ServerConnection(ServerConfig("mx.test"))
    conn.receive_data(b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
    drain(conn)
    conn.data_to_send()
    return conn


def run(conn: ServerConnection, reads: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in reads:
        conn.receive_data(chunk)
        events += drain(conn)
    return events


def content(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, MessageData))


# --- random input never raises --------------------------------------------------------

VERBS = [b"EHLO", b"HELO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"BDAT", b"RSET", b"NOOP", b"QUIT"]
WORDS = [b"<a@b.c>", b"<>", b" ", b"SIZE=", b"BODY=8BITMIME", b"NOTIFY=", b"ORCPT=rfc822;", b"LAST"]
command_lines = st.lists(
    st.one_of(st.sampled_from(VERBS), st.sampled_from(WORDS), st.binary(max_size=12)),
    max_size=6,
).map(b"".join)


@given(
    st.lists(command_lines, max_size=25),
    st.lists(st.integers(min_value=0), max_size=5),
    st.booleans(),
)
@fuzz_target(weight=0.4)
def test_random_command_lines_only_produce_replies(
    lines: list[bytes], cuts: list[int], deny: bool
) -> None:
    conn = ServerConnection(ServerConfig("mx.test", max_errors=1000))
    conn.send_greeting()
    stream = b"EHLO fuzz\r\n" + b"".join(line + b"\r\n" for line in lines)
    for chunk in split(stream, cuts):
        conn.receive_data(chunk)
        drain(conn, deny)
        assert len(conn._buf) - conn._pos <= 64 * 1024 + len(chunk)
    conn.receive_data(b"")
    drain(conn, deny)
    assert conn.closed
    out = conn.data_to_send()
    assert REPLY_LINE.sub(b"", out) == b""


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=8))
@fuzz_target(weight=0.4)
def test_random_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    conn = ServerConnection(ServerConfig("mx.test", max_errors=5, max_command_length=64))
    conn.receive_data(b"EHLO fuzz\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n")
    drain(conn)
    for chunk in split(data, cuts):
        conn.receive_data(chunk)
        drain(conn)
    assert REPLY_LINE.sub(b"", conn.data_to_send()) == b""


# --- DATA framing -------------------------------------------------------------------

text_lines = st.lists(
    st.one_of(
        st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
        st.sampled_from([b".", b"..", b".x", b"", b". ", b"\x00", b"\xff\xfe"]),
    ),
    max_size=30,
)


def dot_stuff(lines: list[bytes]) -> bytes:
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


@given(text_lines, st.lists(st.integers(min_value=0), max_size=10))
@fuzz_target(weight=0.4)
def test_random_splitting_yields_identical_content(lines: list[bytes], cuts: list[int]) -> None:
    stream = dot_stuff(lines) + b".\r\nNOOP\r\n"
    events = run(open_transaction(), split(stream, cuts))
    assert content(events) == b"".join(line + b"\r\n" for line in lines)
    assert [type(e) for e in events if not isinstance(e, MessageData)] == [MessageComplete]


FRAGMENTS = [b"\r", b"\n", b".", b"\r\n", b"x", b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\r"]
FRAGMENTS += [b"\r.\r\n", b"\r\n.\n", b"MAIL FROM:<evil@x>\r\n", b"RCPT TO:<v@x>\r\n"]
FRAGMENTS += [b"DATA\r\n", b"\r\n..\r\n", b".\r\n"]
lookalike_bodies = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join)


def first_message(body: bytes) -> bytes:
    """The content a correct server sees before the first real CRLF.CRLF (always present)."""
    framed = b"\r\n" + body + b"\r\n.\r\n"
    return framed[2 : framed.find(b"\r\n.\r\n") + 2]


def has_bare(data: bytes) -> bool:
    stripped = data.replace(b"\r\n", b"")
    return b"\r" in stripped or b"\n" in stripped


@given(lookalike_bodies, st.lists(st.integers(min_value=0), max_size=10))
@fuzz_target(weight=0.4)
def test_lookalike_terminators_never_end_the_message_early(body: bytes, cuts: list[int]) -> None:
    assume(first_message(body) == body + b"\r\n")  # no real terminator inside the body
    assume(not body.startswith(b".\r\n"))
    stream = body + b"\r\n.\r\n"
    conn = open_transaction()
    reads = split(stream, cuts)
    events = run(conn, reads[:-1])
    assert not any(isinstance(e, MessageComplete | MessageAborted) for e in events)
    events += run(conn, reads[-1:])
    ends = [e for e in events if isinstance(e, MessageComplete | MessageAborted)]
    assert len(ends) == 1
    assert not any(isinstance(e, MailFrom | RcptTo) for e in events)
    if has_bare(body):
        assert ends == [MessageAborted(Reply(554, "5.6.0", "Message contains bare CR or LF"))]
    else:
        assert ends == [MessageComplete()]


mixed_bodies = st.lists(
    st.one_of(st.binary(max_size=12), st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"\r\n."])),
    max_size=20,
).map(b"".join)


@given(mixed_bodies, st.lists(st.integers(min_value=0), max_size=10))
@fuzz_target(weight=0.4)
def test_body_with_bare_line_ending_is_never_accepted(body: bytes, cuts: list[int]) -> None:
    message = first_message(body)
    assume(has_bare(message))
    stream = body + b"\r\n.\r\n"
    events = run(open_transaction(), split(stream, cuts))
    assert not any(isinstance(e, MessageComplete) for e in events)
    aborted = [e for e in events if isinstance(e, MessageAborted)]
    assert len(aborted) == 1 and aborted[0].reply.code == 554
    assert not any(isinstance(e, MailFrom | RcptTo) for e in events)


@given(
    st.lists(st.binary(max_size=50), min_size=1, max_size=6),
    st.lists(st.integers(min_value=0), max_size=10),
)
@fuzz_target(weight=0.4)
def test_bdat_chunks_are_delivered_verbatim(chunks: list[bytes], cuts: list[int]) -> None:
    conn = open_transaction()
    conn.receive_data(b".\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n")
    drain(conn)
    stream = b"".join(
        b"BDAT %d%s\r\n%s" % (len(c), b" LAST" if i == len(chunks) - 1 else b"", c)
        for i, c in enumerate(chunks)
    )
    events = run(conn, split(stream, cuts))
    assert content(events) == b"".join(chunks)
    assert [type(e) for e in events if not isinstance(e, MessageData)] == [MessageComplete]
