"""Fuzz the sans-I/O SMTP server with whole sessions: any stream, any read boundaries,
any (legal) answers from the driver, every configuration knob.

The driver checks, after every read: the core raises nothing; it only hands out the
events its state allows (no MAIL before a greeting, no content without an accepted
recipient, no AUTH where it is not offered...); its input buffer never holds more than
the limit of its state; and what it writes is a sequence of well-formed replies that
the client's parser reads, never more replies than the client sent lines (plus the
greeting and a closing 421).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from outrider.smtp import server as core
from outrider.smtp.client import ReplyParser
from outrider.smtp.replies import Reply
from outrider.smtp.server import (
    AuthRequested,
    AuthResponse,
    ConnectionClosed,
    Event,
    Hello,
    MailFrom,
    MessageAborted,
    MessageComplete,
    MessageData,
    RcptTo,
    ServerConfig,
    ServerConnection,
    StartTlsRequested,
    TransactionReset,
)
from tests.fuzz.harness import fuzz_target
from tests.fuzz.smtp_streams import REPLY_LINES, cut_points, split, streams

REJECTIONS = [
    Reply(550, "5.7.1", "No"),
    Reply(451, "4.3.0", "Try later"),
    Reply(421, "4.7.0", "Go away"),
    Reply(554, "", "No\nreally not"),
    Reply(535, "5.7.8", "Bad credentials"),
    Reply(454, "4.7.0", "Temporary"),
]
ACCEPT_TEXTS = [None, None, "OK", "", "queued as X1\nsecond line", "d\u00e9j\u00e0 vu"]
MECHANISMS = ("PLAIN", "LOGIN", "SCRAM-SHA-256")


@st.composite
def configs(draw: st.DrawFn) -> ServerConfig:
    command = draw(st.sampled_from([16, 40, 512, 600]))
    mechanisms = draw(st.lists(st.sampled_from(MECHANISMS), unique=True, max_size=3))
    return ServerConfig(
        "mx.test",
        max_message_size=draw(st.sampled_from([0, 10, 200, 50 * 1024 * 1024])),
        max_recipients=draw(st.sampled_from([1, 2, 1000])),
        max_command_length=command,
        max_text_line_length=draw(st.sampled_from([16, 80, 1000])),
        max_errors=draw(st.sampled_from([0, 3, 20, 1000])),
        max_pipeline_backlog=draw(st.sampled_from([command, command * 3, 64 * 1024])),
        starttls=draw(st.booleans()),
        auth_mechanisms=tuple(mechanisms),
        auth_plaintext=draw(st.booleans()),
        require_auth=bool(mechanisms) and draw(st.booleans()),
        max_connection_messages=draw(st.sampled_from([0, 1, 2])),
        max_connection_recipients=draw(st.sampled_from([0, 1, 3])),
        auth_lifts_connection_limits=draw(st.booleans()),
    )


@dataclass
class Model:
    """What the driver knows of the session, to judge each event against."""

    config: ServerConfig
    secure: bool
    greeted: bool = False
    authenticated: bool = False
    challenged: bool = False
    sender: bool = False
    recipients: int = 0
    closed: bool = False


def buffer_limit(conn: ServerConnection) -> int:
    """The most unprocessed input the core may hold once it waits for more input."""
    state = conn._state
    config = conn._config
    if state is core._State.COMMAND:
        return 1 if conn._discarding else config.max_command_length - 1
    if state is core._State.DATA:
        return 0 if conn._body_error is not None else config.max_text_line_length - 1
    if state is core._State.AUTH:
        return core.MAX_AUTH_LINE - 1
    return 0  # BDAT consumes everything; TLS_PENDING and CLOSED hold nothing


def check_bounded(conn: ServerConnection) -> None:
    unprocessed = len(conn._buf) - conn._pos
    assert unprocessed <= buffer_limit(conn), (conn._state, unprocessed)
    assert len(conn._tail) <= len(b"\r\n.\r\n")
    assert len(conn._recipients) <= conn._config.max_recipients
    assert not conn._events


class Driver:
    """Feeds the core, judges every event against the model, answers every decision with
    a choice drawn by hypothesis (accept, reject, AUTH challenge/success/failure)."""

    def __init__(self, conn: ServerConnection, model: Model, data: st.DataObject) -> None:
        self.conn, self.model, self.data = conn, model, data

    def choose(self, options: list[str]) -> str:
        return self.data.draw(st.sampled_from(options))

    def drain(self) -> None:
        conn, model = self.conn, self.model
        while (event := conn.next_event()) is not None:
            assert not model.closed, f"{event} after ConnectionClosed"
            self.judge(event)
        if not model.closed:
            check_bounded(conn)

    def judge(self, event: Event) -> None:
        """Check ``event`` against the model, answer it if it needs a decision."""
        conn, m, cfg = self.conn, self.model, self.model.config
        if isinstance(event, Hello):
            assert not m.sender and event.name == event.name.strip(" ") and event.name
            if self.decide():
                m.greeted = True
        elif isinstance(event, MailFrom):
            assert m.greeted and not m.sender
            assert m.authenticated or not cfg.require_auth
            if self.decide():
                m.sender, m.recipients = True, 0
        elif isinstance(event, RcptTo):
            assert m.sender and m.recipients < cfg.max_recipients
            if self.decide():
                m.recipients += 1
        elif isinstance(event, MessageData):
            assert m.sender and m.recipients > 0 and event.data
        elif isinstance(event, MessageComplete):
            assert m.sender and m.recipients > 0
            self.decide()
            m.sender = False
        elif isinstance(event, MessageAborted | TransactionReset):
            assert m.sender
            m.sender = False
        elif isinstance(event, StartTlsRequested):
            assert cfg.starttls and not m.secure and m.greeted and not m.sender
            if self.decide():
                self.upgrade()
        elif isinstance(event, AuthRequested):
            assert event.mechanism in cfg.auth_mechanisms and m.greeted
            assert not m.authenticated and not m.sender
            assert m.secure or cfg.auth_plaintext
            self.answer_auth()
        elif isinstance(event, AuthResponse):
            assert m.challenged
            self.answer_auth()
        else:
            assert isinstance(event, ConnectionClosed)
            assert conn.closed and not m.sender
            m.closed = True

    def decide(self) -> bool:
        if self.choose(["accept", "accept", "accept", "reject"]) == "accept":
            self.conn.accept(self.data.draw(st.sampled_from(ACCEPT_TEXTS)))
            return not self.conn.closed
        reply = self.data.draw(st.sampled_from(REJECTIONS))
        self.conn.reject(reply)
        return False

    def answer_auth(self) -> None:
        self.model.challenged = False
        choice = self.choose(["challenge", "success", "failure"])
        if choice == "challenge":
            self.conn.auth_challenge(self.data.draw(st.binary(max_size=40)))
            self.model.challenged = True
        elif choice == "success":
            self.conn.auth_success("user")
            self.model.authenticated = True
        else:
            self.conn.auth_failure(self.data.draw(st.sampled_from(REJECTIONS)))

    def upgrade(self) -> None:
        """After the 220: plaintext (injected or early) is dropped, then TLS starts over."""
        conn = self.conn
        assert conn.tls_pending and not conn._buf
        conn.receive_data(
            self.data.draw(
                st.sampled_from([b"", b"MAIL FROM:<x@y.test>\r\n", b"EHLO x\r\nAUTH PLAIN =\r\n"])
            )
        )
        assert conn.next_event() is None
        conn.tls_established()
        self.model.secure, self.model.greeted = True, False


@given(
    configs(),
    st.booleans(),
    st.booleans(),
    streams,
    cut_points,
    st.sampled_from(["eof", "quit", "shutdown", "timeout", "nothing"]),
    st.data(),
)
@fuzz_target(weight=1)
def test_sessions_only_produce_allowed_events_and_replies(
    config: ServerConfig,
    secure: bool,
    pregreet: bool,
    stream: bytes,
    cuts: list[int],
    ending: str,
    data: st.DataObject,
) -> None:
    conn = ServerConnection(config, secure=secure)
    model = Model(config, secure)
    driver = Driver(conn, model, data)
    fed = b""
    if pregreet:
        conn.hold_greeting()
        conn.receive_data(b"EHLO early\r\n")
        fed += b"EHLO early\r\n"
    conn.send_greeting()
    for chunk in split(stream, cuts):
        before = len(conn._buf) - conn._pos
        conn.receive_data(chunk)
        fed += chunk
        if not conn.closed:
            assert before < config.max_pipeline_backlog
            assert len(conn._buf) - conn._pos <= before + len(chunk)
        if data.draw(st.booleans()):  # else keep reading while events wait (pipelining)
            driver.drain()
    driver.drain()
    if ending == "eof":
        conn.receive_data(b"")
    elif ending == "quit" and not conn.in_data:
        conn.receive_data(b"QUIT\r\n")
        fed += b"QUIT\r\n"
    elif ending == "shutdown":
        conn.shutdown()
    elif ending == "timeout":
        conn.timeout()
    driver.drain()
    if ending in ("eof", "shutdown", "timeout"):
        assert conn.closed and model.closed
    out = conn.data_to_send()
    assert REPLY_LINES.fullmatch(out), out[-200:]
    replies = ReplyParser(max_line_length=1024, max_lines=64).feed(out)
    assert b"".join(r.to_bytes() for r in replies).count(b"\r\n") == out.count(b"\r\n")
    assert len(replies) <= fed.count(b"\r\n") + 3


@given(configs(), streams, cut_points)
@fuzz_target(weight=0.3)
def test_unanswered_decisions_keep_the_backlog_bounded(
    config: ServerConfig, stream: bytes, cuts: list[int]
) -> None:
    """A driver that keeps reading while a decision waits: input is held, up to the limit."""
    conn = ServerConnection(config)
    conn.send_greeting()
    for chunk in split(stream * 4, cuts):
        before = len(conn._buf) - conn._pos
        conn.receive_data(chunk)
        if conn.closed:
            assert not conn._buf
            break
        assert before < config.max_pipeline_backlog
        assert len(conn._buf) - conn._pos <= before + len(chunk)
        conn.next_event()  # at most one event, never answered
    out = conn.data_to_send()
    assert REPLY_LINES.fullmatch(out)
