"""The sans-I/O server at its edges: limits at their exact values, errors that count
towards ``max_errors`` (and those that do not), buffering across reads, and the driver
contract (what a closed connection or a misused decision method does)."""

from __future__ import annotations

import base64

import pytest

from outrider.message.envelope import Notify
from outrider.smtp.replies import Reply
from outrider.smtp.server import (
    MAX_AUTH_LINE,
    AuthRequested,
    AuthResponse,
    ConnectionClosed,
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
from tests.unit.smtp.test_server import (
    codes,
    data_of,
    drain,
    feed,
    in_transaction,
    kinds,
    session,
)

# --- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_command_length": 16},
        {"max_text_line_length": 16},
        {"max_errors": 0},
        {"max_recipients": 1},
        {"max_pipeline_backlog": 512, "max_command_length": 512},
        {"max_connection_messages": 0, "max_connection_recipients": 0},
    ],
)
def test_config_accepts_the_smallest_allowed_values(kwargs: dict[str, int]) -> None:
    ServerConfig("mx.test", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hostname", "kwargs"),
    [
        ("", {}),
        ("mx\x00.test", {}),
        ("mx.test\r\n", {}),
        ("mx.test", {"max_command_length": 15}),
        ("mx.test", {"max_text_line_length": 15}),
        ("mx.test", {"max_message_size": -1}),
        ("mx.test", {"max_recipients": 0}),
        ("mx.test", {"max_errors": -1}),
        ("mx.test", {"max_pipeline_backlog": 511, "max_command_length": 512}),
        ("mx.test", {"max_connection_messages": -1}),
        ("mx.test", {"max_connection_recipients": -1}),
    ],
)
def test_config_refuses_each_bad_value_alone(hostname: str, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ServerConfig(hostname, **kwargs)  # type: ignore[arg-type]


# --- max_errors -----------------------------------------------------------------------


def test_exactly_max_errors_are_tolerated_and_the_next_closes() -> None:
    conn = session(max_errors=3)
    events, out = feed(conn, b"BAD\r\n" * 3 + b"NOOP\r\n")
    assert events == [] and not conn.closed
    assert codes(out) == ["500 5.5.2"] * 3 + ["250 2.0.0"]
    events, out = feed(conn, b"BAD\r\n")
    assert events == [ConnectionClosed()]
    assert codes(out) == ["500 5.5.2", "421 4.7.0"]


def test_max_errors_zero_closes_at_the_first_error() -> None:
    conn = session(max_errors=0)
    _, out = feed(conn, b"BAD\r\nNOOP\r\n")
    assert codes(out) == ["500 5.5.2", "421 4.7.0"]
    assert conn.closed


@pytest.mark.parametrize(
    "body",
    [b"bare\nLF\r\n.\r\n", b"x" * 40 + b"\r\n.\r\n", b"x" * 40],
    ids=["bare-lf", "long-line", "long-unterminated-line"],
)
def test_a_malformed_body_counts_as_an_error(body: bytes) -> None:
    """Bare CR/LF and over-long lines are client errors: with max_errors=0 they end the
    connection after the 554."""
    conn = in_transaction(max_errors=0, max_text_line_length=20)
    events, out = feed(conn, [b"DATA\r\n", body, b"\r\n.\r\n" if body.endswith(b"x") else b""])
    assert codes(out) == ["354", "554 5.6.0", "421 4.7.0"]
    assert kinds(events) == [MessageAborted, ConnectionClosed]


def test_an_oversized_body_is_not_a_protocol_error() -> None:
    """552 is a policy refusal, not a client error: it never counts towards max_errors."""
    conn = in_transaction(max_errors=0, max_message_size=10)
    events, out = feed(conn, b"DATA\r\n" + b"0123456789\r\n.\r\nNOOP\r\n")
    assert codes(out) == ["354", "552 5.3.4", "250 2.0.0"]
    assert kinds(events) == [MessageAborted]
    assert not conn.closed


def test_an_oversized_bdat_message_is_not_a_protocol_error() -> None:
    conn = in_transaction(max_errors=0, max_message_size=10)
    events, out = feed(conn, b"BDAT 11 LAST\r\n0123456789xNOOP\r\n")
    assert codes(out) == ["552 5.3.4", "250 2.0.0"]
    assert kinds(events) == [MessageAborted]
    assert not conn.closed


def test_bdat_without_mail_counts_as_an_error_but_no_valid_recipients_does_not() -> None:
    conn = session(max_errors=0)
    feed(
        conn,
        b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n",
        lambda e: Reply(550, "5.1.1", "no") if isinstance(e, RcptTo) else None,
    )
    _, out = feed(conn, b"BDAT 2\r\nab")
    assert codes(out) == ["554 5.5.1"]
    assert not conn.closed
    _, out = feed(conn, b"RSET\r\nBDAT 2\r\nab")
    assert codes(out) == ["250 2.0.0", "503 5.5.1", "421 4.7.0"]
    assert conn.closed


# --- sizes ---------------------------------------------------------------------------


def test_mail_size_parameter_exactly_at_the_limit_is_accepted() -> None:
    conn = session(max_message_size=1000)
    _, out = feed(
        conn, b"MAIL FROM:<a@x.test> SIZE=1000\r\nRSET\r\nMAIL FROM:<a@x.test> SIZE=1001\r\n"
    )
    assert codes(out) == ["250 2.1.0", "250 2.0.0", "552 5.3.4"]


def test_bdat_messages_exactly_at_the_limit_are_accepted_one_after_another() -> None:
    conn = in_transaction(max_message_size=10)
    events, out = feed(
        conn,
        b"BDAT 10 LAST\r\n0123456789"
        b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 4\r\n0123BDAT 6 LAST\r\n456789",
    )
    assert kinds(events) == [MessageComplete, MailFrom, RcptTo, MessageComplete]
    assert codes(out) == ["250 2.0.0", "250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0"]


def test_bdat_chunks_add_up_towards_the_size_limit() -> None:
    """Each chunk fits on its own; the third takes the message over the limit."""
    conn = in_transaction(max_message_size=10)
    events, out = feed(conn, b"BDAT 4\r\n0123BDAT 4\r\n4567BDAT 4 LAST\r\n89ab")
    assert codes(out) == ["250 2.0.0", "250 2.0.0", "552 5.3.4"]
    assert kinds(events) == [MessageAborted]


# --- transactions --------------------------------------------------------------------


def test_second_transaction_needs_its_own_rcpt_before_data() -> None:
    conn = in_transaction()
    feed(conn, b"DATA\r\nhi\r\n.\r\n")
    _, out = feed(conn, b"MAIL FROM:<a@x.test>\r\nDATA\r\n")
    assert codes(out) == ["250 2.1.0", "503 5.5.1"]


def test_accepted_recipients_keep_their_parameters() -> None:
    conn = session()
    feed(conn, b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test> NOTIFY=NEVER ORCPT=rfc822;b@y.test\r\n")
    txn = conn.transaction
    assert txn is not None
    params = txn.recipients[0].params
    assert (params.notify, params.orcpt) == (Notify.NEVER, "rfc822;b@y.test")


@pytest.mark.parametrize("spaces", [b" ", b"   "])
def test_trailing_spaces_after_mail_and_rcpt_are_ignored(spaces: bytes) -> None:
    conn = session()
    events, out = feed(
        conn, b"MAIL FROM:<a@x.test>" + spaces + b"\r\nRCPT TO:<b@y.test>" + spaces + b"\r\n"
    )
    assert kinds(events) == [MailFrom, RcptTo]
    assert codes(out) == ["250 2.1.0", "250 2.1.5"]
    txn = conn.transaction
    assert txn is not None
    assert (txn.sender, [r.address for r in txn.recipients]) == ("a@x.test", ["b@y.test"])


# --- command framing -----------------------------------------------------------------


@pytest.mark.parametrize("line", [b"NOOPX", b"RSETX", b"QUITX", b"NOOPTTLS", b"MAILTTLS x"])
def test_a_verb_must_be_followed_by_space_or_the_line_end(line: bytes) -> None:
    conn = session()
    events, out = feed(conn, line + b"\r\n")
    assert events == [] and codes(out) == ["500 5.5.2"]
    assert not conn.closed


def test_starttls_with_a_one_letter_argument_is_a_syntax_error() -> None:
    conn = ServerConnection(ServerConfig("mx.test", starttls=True))
    feed(conn, b"EHLO c.test\r\n")
    events, out = feed(conn, b"STARTTLS x\r\n")
    assert events == [] and codes(out) == ["501 5.5.4"]


def test_commands_after_a_bare_lf_line_in_the_same_read_are_answered() -> None:
    _, out = feed(session(), b"NO\nOP\r\nNOOP\r\n")
    assert codes(out) == ["500 5.5.2", "250 2.0.0"]


def test_commands_after_an_over_long_line_in_the_same_read_are_answered() -> None:
    _, out = feed(session(), b"NOOP " + b"a" * 600 + b"\r\nNOOP\r\n")
    assert codes(out) == ["500 5.5.2", "250 2.0.0"]


def test_a_long_command_after_pipelined_ones_is_measured_from_its_own_start() -> None:
    """512 octets with CRLF is allowed even when it arrives behind other commands, split."""
    line = b"NOOP " + b"a" * 505 + b"\r\n"
    stream = b"NOOP\r\n" * 10 + line
    _, out = feed(session(), [stream[:560], stream[560:]])
    assert codes(out) == ["250 2.0.0"] * 11


def test_an_over_long_line_ends_only_at_crlf_not_at_a_later_bare_lf() -> None:
    """The octets of an over-long line are dropped up to its CRLF; a read that starts with
    a bare LF continues the line, it does not end it."""
    _, out = feed(session(), [b"NOOP " + b"a" * 600, b"\nNOOP\r\n", b"NOOP\r\n"])
    assert codes(out) == ["500 5.5.2", "250 2.0.0"]


# --- DATA ------------------------------------------------------------------------------


def test_empty_body_hands_out_no_data_event() -> None:
    events, _ = feed(in_transaction(), b"DATA\r\n.\r\n")
    assert events == [MessageComplete()]


def test_complete_lines_of_a_read_come_as_one_data_event() -> None:
    events, _ = feed(in_transaction(), [b"DATA\r\n", b"one\r\ntwo\r\nthree\r\npart"])
    assert [e for e in events if isinstance(e, MessageData)] == [
        MessageData(b"one\r\ntwo\r\nthree\r\n")
    ]


def test_an_empty_line_at_the_start_of_a_read_is_handed_out_at_once() -> None:
    """It does not count towards the length of the partial line behind it."""
    conn = in_transaction(max_text_line_length=20)
    events, out = feed(conn, [b"DATA\r\n", b"\r\n" + b"x" * 18, b"\r\n.\r\n"])
    assert data_of(events) == b"\r\n" + b"x" * 18 + b"\r\n"
    assert codes(out) == ["354", "250 2.0.0"]


def test_a_partial_line_behind_complete_ones_is_measured_from_its_own_start() -> None:
    conn = in_transaction(max_text_line_length=20)
    events, out = feed(conn, [b"DATA\r\nline\r\n" + b"x" * 16, b"\r\n.\r\n"])
    assert data_of(events) == b"line\r\n" + b"x" * 16 + b"\r\n"
    assert codes(out) == ["354", "250 2.0.0"]


def test_an_over_long_body_line_bigger_than_the_backlog_is_skipped() -> None:
    """A long line in DATA is consumed as it arrives; it never counts as pipelined input."""
    conn = in_transaction(max_pipeline_backlog=1024)
    events, out = feed(conn, [b"DATA\r\n", b"x" * 5000, b"y" * 5000, b"\r\n.\r\nNOOP\r\n"])
    assert codes(out) == ["354", "554 5.6.0", "250 2.0.0"]
    assert kinds(events) == [MessageAborted]


def test_large_reads_of_a_body_never_trip_the_backlog_limit() -> None:
    conn = in_transaction(max_pipeline_backlog=1024, max_message_size=100_000)
    chunk = b"0123456789" * 99 + b"\r\n" * 5  # 1000 octets, complete lines
    events, out = feed(conn, [b"DATA\r\n", chunk, chunk, chunk, b".\r\n"])
    assert codes(out) == ["354", "250 2.0.0"]
    assert data_of(events) == chunk * 3


def test_terminator_followed_by_eof_still_asks_for_a_decision() -> None:
    conn = in_transaction()
    conn.receive_data(b"DATA\r\nhi\r\n.\r\n")
    conn.receive_data(b"")
    events = drain(conn)
    assert kinds(events) == [MessageComplete, ConnectionClosed]
    assert codes(conn.data_to_send()) == ["354", "250 2.0.0"]


def test_skipping_a_refused_body_stops_at_its_own_terminator() -> None:
    """A pipelined second message behind the refused one is read, not skipped with it."""
    conn = in_transaction()
    feed(conn, b"DATA\r\nbare\nLF\r\n")
    events, out = feed(
        conn, b".\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nsecond\r\n.\r\n"
    )
    assert kinds(events) == [MessageAborted, MailFrom, RcptTo, MessageComplete]
    assert data_of(events) == b"second\r\n"
    assert codes(out) == ["554 5.6.0", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"]


def test_commands_after_a_refused_body_are_answered_before_eof_closes() -> None:
    conn = in_transaction()
    feed(conn, b"DATA\r\nbare\nLF\r\n")
    conn.receive_data(b".\r\nQUIT\r\n")
    conn.receive_data(b"")
    events = drain(conn)
    assert kinds(events) == [MessageAborted, ConnectionClosed]
    assert codes(conn.data_to_send()) == ["554 5.6.0", "221 2.0.0"]


# --- pipelined backlog -------------------------------------------------------------------


@pytest.mark.parametrize(("size", "closes"), [(1023, False), (1024, True)])
def test_backlog_limit_is_the_unprocessed_octets(size: int, closes: bool) -> None:
    conn = session(max_pipeline_backlog=1024)
    conn.receive_data(b"MAIL FROM:<a@x.test>\r\n")
    assert isinstance(conn.next_event(), MailFrom)
    conn.receive_data(b"x" * size)  # a decision is pending: only buffered
    conn.receive_data(b"\r\n")
    assert conn.closed is closes


def test_input_after_eof_is_ignored() -> None:
    conn = session()
    conn.receive_data(b"")
    conn.receive_data(b"NOOP\r\n")
    assert drain(conn) == [ConnectionClosed()]
    assert conn.data_to_send() == b""


def test_events_are_handed_out_before_later_pipelined_commands_run() -> None:
    """The driver sees a TransactionReset before the replies of what follows it."""
    conn = in_transaction()
    conn.receive_data(b"RSET\r\nQUIT\r\n")
    assert conn.next_event() == TransactionReset()
    assert codes(conn.data_to_send()) == ["250 2.0.0"]
    assert not conn.closed
    assert conn.next_event() == ConnectionClosed()


# --- decisions and closing ---------------------------------------------------------------


def test_closing_drops_an_undelivered_decision() -> None:
    """EHLO mid-transaction queues TransactionReset and then Hello; a shutdown after the
    reset was pulled leaves nothing to decide."""
    conn = in_transaction()
    conn.receive_data(b"EHLO again.test\r\n")
    assert conn.next_event() == TransactionReset()
    conn.shutdown()
    assert drain(conn) == [ConnectionClosed()]


def test_reject_needs_a_4xx_or_5xx_reply() -> None:
    conn = session()
    conn.receive_data(b"MAIL FROM:<a@x.test>\r\n")
    assert isinstance(conn.next_event(), MailFrom)
    for positive in (Reply(100, "", "x"), Reply(354, "", "x")):
        with pytest.raises(ProtocolUsageError):
            conn.reject(positive)
    conn.reject(Reply(400, "4.0.0", "lowest transient code"))
    assert codes(conn.data_to_send()) == ["400 4.0.0"]


# --- AUTH ------------------------------------------------------------------------------


def _auth_conn() -> ServerConnection:
    conn = ServerConnection(
        ServerConfig("mx.test", auth_mechanisms=("PLAIN", "LOGIN")), secure=True
    )
    feed(conn, b"EHLO c.test\r\n")
    return conn


def test_auth_methods_need_a_pending_auth_exchange() -> None:
    conn = _auth_conn()
    with pytest.raises(ProtocolUsageError):
        conn.auth_success("user")
    with pytest.raises(ProtocolUsageError):
        conn.auth_challenge(b"")
    assert conn.authenticated is None


def test_auth_answer_after_shutdown_is_a_no_op() -> None:
    conn = _auth_conn()
    conn.receive_data(b"AUTH PLAIN\r\n")
    assert conn.next_event() == AuthRequested("PLAIN", None)
    conn.shutdown()
    conn.auth_success("user")
    conn.auth_challenge(b"more")
    assert conn.authenticated is None
    assert codes(conn.data_to_send()) == ["421 4.3.2"]


def test_auth_with_a_non_ascii_mechanism_is_unrecognised() -> None:
    events, out = feed(_auth_conn(), "AUTH PL\u00c4IN\r\n".encode())
    assert events == [] and codes(out) == ["504 5.5.4"]


def test_auth_response_split_across_reads() -> None:
    conn = _auth_conn()
    feed(conn, b"AUTH LOGIN\r\n")
    conn.auth_challenge(b"Username:")
    conn.data_to_send()
    conn.receive_data(b"dXNl")
    assert conn.next_event() is None
    conn.receive_data(b"cg==\r\n")
    assert conn.next_event() == AuthResponse(b"user")


def test_auth_response_pipelined_behind_the_auth_command() -> None:
    """Read from where the AUTH line ended, and measured from there too: 12270 octets of
    an unfinished response behind the 12-octet AUTH line are still under the limit."""
    response = base64.b64encode(b"u" * 9207)  # 12276 octets
    conn = _auth_conn()
    conn.receive_data(b"AUTH LOGIN\r\n" + response[:12270])
    assert conn.next_event() == AuthRequested("LOGIN", None)
    conn.auth_challenge(b"Username:")
    assert conn.next_event() is None
    conn.receive_data(response[12270:] + b"\r\n")
    assert conn.next_event() == AuthResponse(b"u" * 9207)


def test_auth_response_then_eof_still_asks_for_a_decision() -> None:
    conn = _auth_conn()
    feed(conn, b"AUTH LOGIN\r\n")
    conn.auth_challenge(b"Username:")
    conn.receive_data(b"dXNlcg==\r\n")
    conn.receive_data(b"")
    assert conn.next_event() == AuthResponse(b"user")
    conn.auth_failure()
    assert conn.next_event() == ConnectionClosed()


@pytest.mark.parametrize("response", [b"dXNlcg==!", b"dXNl cg==", b"dXNlcg=="[:-1] + b"\x00="])
def test_auth_response_must_be_strict_base64(response: bytes) -> None:
    conn = _auth_conn()
    feed(conn, b"AUTH LOGIN\r\n")
    conn.auth_challenge(b"Username:")
    conn.data_to_send()
    events, out = feed(conn, response + b"\r\n")
    assert events == [] and codes(out) == ["501 5.5.2"]


def test_auth_line_limit_is_exact() -> None:
    """RFC 4954 4: a 12288-octet response is allowed even when its CRLF comes later; an
    unterminated line of MAX_AUTH_LINE octets is already too long."""
    conn = _auth_conn()
    feed(conn, b"AUTH LOGIN\r\n")
    conn.auth_challenge(b"")
    conn.receive_data(b"A" * 12288 + b"\r")
    assert conn.next_event() is None
    conn.receive_data(b"\n")
    assert conn.next_event() == AuthResponse(base64.b64decode(b"A" * 12288))
    conn.auth_challenge(b"")
    conn.data_to_send()
    events, out = feed(conn, [b"A" * MAX_AUTH_LINE, b"\r\nNOOP\r\n"])
    assert events == [] and codes(out) == ["500 5.5.6", "250 2.0.0"]


def test_over_long_auth_line_split_between_cr_and_lf() -> None:
    conn = _auth_conn()
    feed(conn, b"AUTH LOGIN\r\n")
    conn.auth_challenge(b"")
    conn.data_to_send()
    events, out = feed(conn, [b"A" * 13000 + b"\r", b"\nNOOP\r\n"])
    assert events == [] and codes(out) == ["500 5.5.6", "250 2.0.0"]


def test_over_long_auth_line_then_bare_lf_does_not_end_it() -> None:
    conn = _auth_conn()
    feed(conn, b"AUTH LOGIN\r\n")
    conn.auth_challenge(b"")
    conn.data_to_send()
    events, out = feed(conn, [b"A" * 13000, b"\nNOOP\r\n", b"NOOP\r\n"])
    assert events == [] and codes(out) == ["500 5.5.6", "250 2.0.0"]


def test_hello_event_is_the_decision_after_a_reset() -> None:
    conn = in_transaction()
    events, _ = feed(conn, b"EHLO again.test\r\n")
    assert events == [TransactionReset(), Hello("again.test", True)]


@pytest.mark.parametrize("length", [12289, 20000])
def test_an_over_long_auth_line_in_one_read_is_refused_like_one_in_pieces(length: int) -> None:
    """The limit does not depend on how the line arrives: whole in one read, a response
    over 12288 octets gets the same 500 5.5.6 and is never decoded."""
    conn = _auth_conn()
    feed(conn, b"AUTH LOGIN\r\n")
    conn.auth_challenge(b"")
    conn.data_to_send()
    events, out = feed(conn, b"A" * length + b"\r\nNOOP\r\n")
    assert events == [] and codes(out) == ["500 5.5.6", "250 2.0.0"]
