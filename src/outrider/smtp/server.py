"""Sans-I/O ESMTP server protocol core: bytes in, events out, bytes to send out.

Like h11, the connection does no I/O and keeps no clock. The driver feeds what it
read with :meth:`ServerConnection.receive_data`, pulls events with
:meth:`~ServerConnection.next_event`, answers the events that need a decision
(:class:`Hello`, :class:`MailFrom`, :class:`RcptTo`, :class:`MessageComplete`) with
:meth:`~ServerConnection.accept` or :meth:`~ServerConnection.reject`, and writes
whatever :meth:`~ServerConnection.data_to_send` returns. Everything else (NOOP,
RSET, VRFY, HELP, QUIT, syntax and sequence errors, BDAT chunk replies) is
answered here.

While a decision is pending, input is only buffered, so a pipelined batch is
answered in order and in one write (RFC 2920). A client that sends content right
after ``DATA`` without waiting for the 354 (not allowed by RFC 2920, typical of
spamware) gets no advantage: the bytes wait in the buffer and are read as content
once DATA is answered, exactly as if it had waited.

STARTTLS (RFC 3207) and AUTH (RFC 4954) are decisions too. Accepting
:class:`StartTlsRequested` queues the 220 and *discards every octet already
buffered after the STARTTLS line* (plaintext injection, CVE-2011-0411); input fed
before :meth:`ServerConnection.tls_established` is dropped, and afterwards the
session starts over without EHLO. An AUTH exchange is driven with
:meth:`~ServerConnection.auth_challenge`, :meth:`~ServerConnection.auth_success`
and :meth:`~ServerConnection.auth_failure`; the core decodes the base64 client
lines (:class:`AuthResponse`) and handles ``*`` and bad base64 itself.

Buffering is bounded in every state:

* command state: an incomplete command line holds at most ``max_command_length``
  octets; a longer line is discarded up to its CRLF and answered 500 5.5.2.
* DATA: complete lines are handed out as :class:`MessageData` at once; only an
  incomplete line (at most ``max_text_line_length`` octets) is kept.
* BDAT: chunk octets are handed out as they arrive.
* pipelined backlog: input that arrives while earlier input is still unprocessed
  (a decision pending or events not yet pulled) is kept up to
  ``max_pipeline_backlog`` octets; beyond that the client is answered 421 4.7.0
  and the connection closes. A driver that only calls ``receive_data`` after
  ``next_event`` returned None and no decision is pending never reaches it; a
  driver that keeps reading during a slow decision should stop reading instead.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import re
from collections import deque
from dataclasses import dataclass

from outrider.smtp import framing
from outrider.smtp.grammar import (
    NO_MAIL_PARAMS,
    GrammarError,
    MailParams,
    RcptParams,
    has_control,
    parse_mail,
    parse_rcpt,
)
from outrider.smtp.replies import (
    BARE_LINE_ENDING,
    LINE_TOO_LONG,
    MESSAGE_TOO_BIG,
    OK,
    SHUTTING_DOWN,
    SYNTAX_ERROR,
    TOO_MANY_RECIPIENTS,
    UNRECOGNISED,
    Reply,
)

__all__ = [
    "AcceptedRecipient",
    "AuthRequested",
    "AuthResponse",
    "ConnectionClosed",
    "Event",
    "Hello",
    "MailFrom",
    "MailParams",
    "MessageAborted",
    "MessageComplete",
    "MessageData",
    "ProtocolUsageError",
    "RcptParams",
    "RcptTo",
    "ServerConfig",
    "ServerConnection",
    "StartTlsRequested",
    "Transaction",
    "TransactionReset",
]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    hostname: str
    max_message_size: int = 50 * 1024 * 1024  # SIZE extension value
    max_recipients: int = 1000
    max_command_length: int = 512  # incl. CRLF
    max_text_line_length: int = 1000  # incl. CRLF, DATA content lines
    max_errors: int = 20  # then 421 4.7.0 and close
    banner: str = "ESMTP Outrider"
    max_pipeline_backlog: int = 64 * 1024  # unprocessed input kept while busy
    starttls: bool = False  # offer STARTTLS (before TLS is active)
    auth_mechanisms: tuple[str, ...] = ()  # SASL mechanisms; empty: no AUTH
    auth_plaintext: bool = False  # offer AUTH without TLS (loopback listeners only)
    require_auth: bool = False  # MAIL needs a successful AUTH first (530 5.7.0)
    max_connection_messages: int = 0  # MAIL commands per connection; 0: unlimited
    max_connection_recipients: int = 0  # RCPT decisions per connection; 0: unlimited
    auth_lifts_connection_limits: bool = False  # AUTH success lifts the two limits above

    def __post_init__(self) -> None:
        if not self.hostname or has_control(self.hostname) or " " in self.hostname:
            raise ValueError(f"invalid hostname {self.hostname!r}")
        if has_control(self.banner):
            raise ValueError("banner must not contain control characters")
        if self.max_command_length < 16 or self.max_text_line_length < 16:
            raise ValueError("line length limits must be at least 16")
        if self.max_message_size < 0 or self.max_recipients < 1 or self.max_errors < 0:
            raise ValueError("limits must be positive")
        if self.max_pipeline_backlog < self.max_command_length:
            raise ValueError("max_pipeline_backlog must be >= max_command_length")
        if self.max_connection_messages < 0 or self.max_connection_recipients < 0:
            raise ValueError("per-connection limits must be >= 0")
        for mechanism in self.auth_mechanisms:
            if not _MECHANISM_NAME.fullmatch(mechanism):
                raise ValueError(f"invalid SASL mechanism name {mechanism!r}")
        if self.require_auth and not self.auth_mechanisms:
            raise ValueError("require_auth needs at least one AUTH mechanism")


# --- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """EHLO (``extended``) or HELO. Needs a decision."""

    name: str
    extended: bool


@dataclass(frozen=True, slots=True)
class MailFrom:
    """MAIL FROM; ``sender`` is "" for the null reverse-path. Needs a decision."""

    sender: str
    params: MailParams


@dataclass(frozen=True, slots=True)
class RcptTo:
    """RCPT TO. Needs a decision."""

    recipient: str
    params: RcptParams


@dataclass(frozen=True, slots=True)
class StartTlsRequested:
    """STARTTLS. Needs a decision: ``accept()`` then upgrade, or ``reject(454 ...)``."""


@dataclass(frozen=True, slots=True)
class AuthRequested:
    """AUTH; ``initial_response`` is decoded (``b""`` for "="). Answer with ``auth_*``."""

    mechanism: str  # upper-cased, one of ServerConfig.auth_mechanisms
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """The client's (decoded) answer to a 334 challenge. Answer with ``auth_*``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class MessageData:
    """A piece of content: unstuffed, CRLF line endings intact, terminator removed."""

    data: bytes


@dataclass(frozen=True, slots=True)
class MessageComplete:
    """End of DATA or BDAT LAST. Needs a decision; the transaction ends either way."""


@dataclass(frozen=True, slots=True)
class MessageAborted:
    """The body failed a framing check; ``reply`` is already queued. Discard the data."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class TransactionReset:
    """A started transaction was abandoned (RSET, EHLO, QUIT, EOF...). Discard the data."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """Emitted once; flush :meth:`ServerConnection.data_to_send` and close the socket."""


Event = (
    Hello
    | MailFrom
    | RcptTo
    | StartTlsRequested
    | AuthRequested
    | AuthResponse
    | MessageData
    | MessageComplete
    | MessageAborted
    | TransactionReset
    | ConnectionClosed
)
Decision = (
    Hello | MailFrom | RcptTo | MessageComplete | StartTlsRequested | AuthRequested | AuthResponse
)


@dataclass(frozen=True, slots=True)
class AcceptedRecipient:
    address: str
    params: RcptParams


@dataclass(frozen=True, slots=True)
class Transaction:
    """Snapshot of the current MAIL transaction."""

    sender: str
    params: MailParams
    recipients: tuple[AcceptedRecipient, ...]


class ProtocolUsageError(RuntimeError):
    """The driver called accept()/reject() with no decision pending, or a bad reply."""


# --- replies ------------------------------------------------------------------------

DATA_GO_AHEAD = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
SENDER_OK = Reply(250, "2.1.0", "OK")
RECIPIENT_OK = Reply(250, "2.1.5", "OK")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")
BARE_LINE_ENDING_IN_DATA = Reply(554, "5.6.0", "Message contains bare CR or LF")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors")
BACKLOG_OVERFLOW = Reply(421, "4.7.0", "Too much pipelined input")
BDAT_SYNTAX = Reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]")
BDAT_FRAMING_LOST = Reply(421, "4.5.0", "BDAT framing lost, closing connection")
VRFY_REPLY = Reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery")
EXPN_REPLY = Reply(502, "5.5.1", "EXPN not supported")
HELP_REPLY = Reply(
    214, "2.0.0", "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT"
)
NEED_HELLO = Reply(503, "5.5.1", "Send EHLO or HELO first")
NESTED_MAIL = Reply(503, "5.5.1", "Nested MAIL command")
NEED_MAIL = Reply(503, "5.5.1", "Need MAIL command first")
NEED_RCPT = Reply(503, "5.5.1", "Need RCPT before DATA")
DATA_AFTER_BDAT = Reply(503, "5.5.1", "DATA not allowed after BDAT")
BINARYMIME_NEEDS_BDAT = Reply(503, "5.5.1", "BODY=BINARYMIME requires BDAT")

READY_FOR_TLS = Reply(220, "2.0.0", "Ready to start TLS")
TLS_NOT_AVAILABLE = Reply(502, "5.5.1", "STARTTLS not available")
TLS_ALREADY_ACTIVE = Reply(503, "5.5.1", "TLS already active")
STARTTLS_IN_TRANSACTION = Reply(503, "5.5.1", "STARTTLS not allowed during a mail transaction")
STARTTLS_SYNTAX = Reply(501, "5.5.4", "Syntax: STARTTLS")
PREGREET = Reply(554, "5.5.0", "Protocol error: client spoke before the greeting")
AUTH_NOT_AVAILABLE = Reply(502, "5.5.1", "AUTH not available")
AUTH_ALREADY_DONE = Reply(503, "5.5.1", "Already authenticated")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH not allowed during a mail transaction")
AUTH_NEEDS_TLS = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_SYNTAX = Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
AUTH_UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")
AUTH_BAD_BASE64 = Reply(501, "5.5.2", "Invalid base64 data")
AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication exchange line is too long")
AUTH_SUCCEEDED = Reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
TOO_MANY_MESSAGES = Reply(421, "4.7.0", "Too many messages in this connection")
TOO_MANY_CONNECTION_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients in this connection")
MAX_AUTH_LINE = 12288 + 2  # RFC 4954 4: at least 12288 octets, plus CRLF

_MECHANISM_NAME = re.compile(r"[A-Z0-9_-]{1,20}")
_BDAT_ARGS = re.compile(rb"([0-9]{1,19})(?: +(LAST))? *", re.IGNORECASE)


@functools.lru_cache(maxsize=256)
def _wire(reply: Reply) -> bytes:
    return reply.to_bytes()


class _State(enum.Enum):
    COMMAND = "command"
    DATA = "data"
    BDAT = "bdat"
    AUTH = "auth"  # a 334 challenge is out: the next line is a SASL response
    TLS_PENDING = "tls-pending"  # 220 sent for STARTTLS; plaintext input is dropped
    CLOSED = "closed"


class ServerConnection:
    """One SMTP server session. See the module docstring for the driving loop."""

    def __init__(self, config: ServerConfig, *, secure: bool = False) -> None:
        """``secure``: the connection is already TLS (an implicit-TLS listener, RFC 8314)."""
        self._config = config
        self._max_command = config.max_command_length
        self._max_line = config.max_text_line_length
        self._max_size = config.max_message_size
        self._long_line_reply = Reply(
            554, "5.6.0", f"Message has a line longer than {config.max_text_line_length} octets"
        )
        self._extensions = (
            "PIPELINING",
            f"SIZE {config.max_message_size}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
            "BINARYMIME",
            "DSN",
        )
        self._handlers = {
            b"EHLO": self._on_ehlo,
            b"HELO": self._on_helo,
            b"MAIL": self._on_mail,
            b"RCPT": self._on_rcpt,
            b"DATA": self._on_data,
            b"BDAT": self._on_bdat,
            b"RSET": self._on_rset,
            b"NOOP": self._on_noop,
            b"QUIT": self._on_quit,
            b"VRFY": self._on_vrfy,
            b"EXPN": self._on_expn,
            b"HELP": self._on_help,
            b"AUTH": self._on_auth,
        }
        self._buf = b""
        self._pos = 0
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()
        self._pending: Decision | None = None
        self._state = _State.COMMAND
        self._eof = False
        self._discarding = False  # skipping the rest of an over-long command line
        self._errors = 0
        self._greeted = False
        self._holding_greeting = False  # see hold_greeting()
        self._spoke_first = False  # input while the greeting was held (pregreet)
        self._discard_reply = LINE_TOO_LONG  # answer to an over-long line once it ends
        self._secure = secure
        self._authenticated: str | None = None
        self._messages = 0  # MAIL commands accepted on this connection
        self._connection_rcpts = 0  # RCPT decisions on this connection
        self._connection_limits = True  # max_connection_messages/_recipients apply
        # transaction (open when _sender is not None)
        self._sender: str | None = None
        self._mail_params = NO_MAIL_PARAMS
        self._recipients: list[AcceptedRecipient] = []
        self._rcpt_attempts = 0
        self._chunking = False
        # message content
        self._body_size = 0
        self._body_error: Reply | None = None
        self._body_error_counts = False
        self._tail = framing.CRLF  # octets consumed just before _pos, while skipping DATA
        # current BDAT chunk
        self._bdat_remaining = 0
        self._bdat_size = 0
        self._bdat_last = False
        self._bdat_discard: Reply | None = None

    # --- public API -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    @property
    def transaction(self) -> Transaction | None:
        if self._sender is None:
            return None
        return Transaction(self._sender, self._mail_params, tuple(self._recipients))

    @property
    def secure(self) -> bool:
        """TLS is active (implicit, or after STARTTLS and the handshake)."""
        return self._secure

    @property
    def authenticated(self) -> str | None:
        """The user name of a successful AUTH, else None."""
        return self._authenticated

    @property
    def tls_pending(self) -> bool:
        """STARTTLS was accepted: the driver must now run the TLS handshake."""
        return self._state is _State.TLS_PENDING

    @property
    def in_data(self) -> bool:
        """True while message content is arriving (RFC 5321 4.5.3.2 gives it its own timeout)."""
        return self._state is _State.DATA or self._state is _State.BDAT

    def send_greeting(self) -> None:
        """Queue the 220; a client that already spoke (pregreet) gets 554 5.5.0 and is closed."""
        if self.closed:
            return
        self._holding_greeting = False
        if self._spoke_first:
            self._close(PREGREET)
            return
        self._reply(Reply(220, "", f"{self._config.hostname} {self._config.banner}"))

    def hold_greeting(self) -> None:
        """The driver delays the greeting: input before :meth:`send_greeting` is pregreet
        traffic (RFC 5321 3.1: the client waits for the 220), dropped and answered 554."""
        self._holding_greeting = True

    def lift_connection_limits(self) -> None:
        """Stop applying ``max_connection_messages`` and ``max_connection_recipients`` to
        this connection (a trusted client; a successful AUTH does it when
        ``auth_lifts_connection_limits``)."""
        self._connection_limits = False

    def refuse(self, reply: Reply) -> None:
        """Refuse the connection instead of greeting it (e.g. a 421 from a connection limit)."""
        self._holding_greeting = False
        self._close(reply)

    def tls_established(self) -> None:
        """The STARTTLS handshake completed: start over, as after the greeting (RFC 3207 4.2)."""
        if self._state is not _State.TLS_PENDING:
            raise ProtocolUsageError("no STARTTLS is pending")
        self._state = _State.COMMAND
        self._secure = True
        self._greeted = False
        self._buf = b""
        self._pos = 0
        self._discarding = False

    def receive_data(self, data: bytes) -> None:
        """Feed octets read from the peer; ``b""`` means the peer closed its side."""
        if self._state is _State.CLOSED or self._eof:
            return
        if not data:
            self._eof = True
            return
        if self._holding_greeting:
            self._spoke_first = True  # kept out of the buffer: it is never executed
            return
        if self._state is _State.TLS_PENDING:
            return  # plaintext after an accepted STARTTLS: never executed
        unprocessed = len(self._buf) - self._pos
        if unprocessed == 0:
            self._buf = bytes(data)
        elif unprocessed >= self._config.max_pipeline_backlog:
            self._close(BACKLOG_OVERFLOW)
            return
        else:
            self._buf = self._buf[self._pos :] + data
        self._pos = 0

    def next_event(self) -> Event | None:
        if not self._events:
            if self._pending is not None or self._state is _State.CLOSED:
                return None
            self._run()
            if not self._events:
                return None
        return self._events.popleft()

    def accept(self, text: str | None = None) -> None:
        """Answer the pending decision positively; ``text`` replaces the default reply text."""
        if isinstance(self._pending, AuthRequested | AuthResponse):
            raise ProtocolUsageError("answer AUTH with auth_challenge/auth_success/auth_failure")
        event = self._take_decision()
        if event is None:
            return
        if text is not None and "\r" in text:
            raise ProtocolUsageError("reply text must not contain CR")
        if isinstance(event, Hello):
            self._greeted = True
            name = self._config.hostname
            greeting = f"{name} {text}" if text else f"{name} Hello {event.name}"
            if event.extended:
                lines = (greeting, *self._extensions, *self._security_extensions())
                self._reply(Reply(250, "", "\n".join(lines)))
            else:
                self._reply(Reply(250, "", greeting))
        elif isinstance(event, MailFrom):
            self._sender = event.sender
            self._mail_params = event.params
            self._messages += 1
            self._reply(Reply(250, "2.1.0", text) if text else SENDER_OK)
        elif isinstance(event, RcptTo):
            self._recipients.append(AcceptedRecipient(event.recipient, event.params))
            self._reply(Reply(250, "2.1.5", text) if text else RECIPIENT_OK)
        elif isinstance(event, StartTlsRequested):
            self._reply(READY_FOR_TLS)
            # RFC 3207 5 / CVE-2011-0411: nothing sent before the handshake is executed.
            self._buf = b""
            self._pos = 0
            self._discarding = False
            self._state = _State.TLS_PENDING
        else:
            self._end_transaction()
            if text:  # e.g. "OK queued as <id>": a reply of its own, not worth caching
                self._out.append(Reply(250, "2.0.0", text).to_bytes())
            else:
                self._reply(OK)

    def reject(self, reply: Reply) -> None:
        """Answer the pending decision with a 4xx/5xx ``reply``; a 421 also closes."""
        if reply.is_positive or reply.code < 400:
            raise ProtocolUsageError(f"reject() needs a 4xx or 5xx reply, got {reply}")
        event = self._take_decision()
        if event is None:
            return
        if isinstance(event, MessageComplete):
            self._end_transaction()
        elif isinstance(event, AuthRequested | AuthResponse):
            self._count_error()
        if reply.code == 421:
            self._close(reply)
        else:
            self._reply(reply)

    def auth_challenge(self, challenge: bytes) -> None:
        """Send ``334 <base64 challenge>``; the client's next line comes as AuthResponse."""
        if not self._take_auth():
            return
        self._out.append(b"334 " + base64.b64encode(challenge) + b"\r\n")
        self._state = _State.AUTH

    def auth_success(self, username: str) -> None:
        """235 2.7.0: the session is authenticated as ``username`` from now on."""
        if not self._take_auth():
            return
        self._authenticated = username
        if self._config.auth_lifts_connection_limits:
            self._connection_limits = False
        self._reply(AUTH_SUCCEEDED)

    def auth_failure(self, reply: Reply = AUTH_FAILED) -> None:
        """End the exchange with ``reply`` (535 5.7.8, or 454 4.7.0 when temporary)."""
        self.reject(reply)

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def shutdown(self) -> None:
        """Queue 421 4.3.2 and close (a graceful stop, meant for an idle connection)."""
        self._close(SHUTTING_DOWN)

    def timeout(self) -> None:
        """The driver's idle timer fired: queue 421 4.4.2 and close."""
        self._close(Reply(421, "4.4.2", f"{self._config.hostname} Error: timeout exceeded"))

    # --- driving ----------------------------------------------------------------------

    def _take_decision(self) -> Decision | None:
        if self._state is _State.CLOSED:
            return None  # e.g. shutdown() raced with a slow decision: nothing to answer
        event = self._pending
        if event is None or self._events:
            raise ProtocolUsageError("no decision is pending")
        self._pending = None
        return event

    def _take_auth(self) -> bool:
        """Clear a pending AUTH decision; False when the connection closed meanwhile."""
        if self._state is _State.CLOSED:
            return False
        if not isinstance(self._pending, AuthRequested | AuthResponse) or self._events:
            raise ProtocolUsageError("no AUTH exchange is pending")
        self._pending = None
        return True

    def _security_extensions(self) -> tuple[str, ...]:
        extra: list[str] = []
        config = self._config
        if config.starttls and not self._secure:
            extra.append("STARTTLS")
        if self._auth_offered() and self._authenticated is None:
            extra.append("AUTH " + " ".join(config.auth_mechanisms))
        return tuple(extra)

    def _auth_offered(self) -> bool:
        config = self._config
        return bool(config.auth_mechanisms) and (self._secure or config.auth_plaintext)

    def _decide(self, event: Decision) -> None:
        self._events.append(event)
        self._pending = event

    def _run(self) -> None:
        """Process buffered input until an event is queued or more input is needed."""
        while not self._events and self._pending is None:
            state = self._state
            if state is _State.COMMAND:
                progressed = self._step_command()
            elif state is _State.DATA:
                progressed = self._step_data()
            elif state is _State.BDAT:
                progressed = self._step_bdat()
            elif state is _State.AUTH:
                progressed = self._step_auth()
            else:
                return
            if not progressed:
                if self._eof:
                    self._close(None)
                return

    def _reply(self, reply: Reply) -> None:
        self._out.append(_wire(reply))

    def _error(self, reply: Reply) -> None:
        """Answer a client protocol error and enforce ``max_errors``."""
        self._reply(reply)
        self._count_error()

    def _count_error(self) -> None:
        self._errors += 1
        if self._errors > self._config.max_errors:
            self._close(TOO_MANY_ERRORS)

    def _close(self, reply: Reply | None) -> None:
        if self._state is _State.CLOSED:
            return
        if reply is not None:
            self._reply(reply)
        if self._pending is not None and self._events and self._events[-1] is self._pending:
            self._events.pop()  # never delivered: nothing left to decide
        self._pending = None
        if self._sender is not None:
            self._end_transaction()
            self._events.append(TransactionReset())
        self._state = _State.CLOSED
        self._buf = b""
        self._pos = 0
        self._events.append(ConnectionClosed())

    def _end_transaction(self) -> None:
        self._sender = None
        self._mail_params = NO_MAIL_PARAMS
        self._recipients = []
        self._rcpt_attempts = 0
        self._chunking = False
        self._body_size = 0
        self._body_error = None

    def _reset_transaction(self) -> None:
        if self._sender is not None:
            self._end_transaction()
            self._events.append(TransactionReset())

    # --- command state ------------------------------------------------------------------

    def _step_command(self) -> bool:
        buf = self._buf
        pos = self._pos
        end = buf.find(b"\r\n", pos)
        if end < 0:
            if self._discarding or len(buf) - pos >= self._max_command:
                # Over-long line: drop it, keeping a final CR that may start the CRLF.
                self._discarding = True
                self._buf = b"\r" if buf.endswith(b"\r") and len(buf) > pos else b""
                self._pos = 0
            return False
        self._pos = end + 2
        if self._discarding or end + 2 - pos > self._max_command:
            self._discarding = False
            reply, self._discard_reply = self._discard_reply, LINE_TOO_LONG
            self._error(reply)
            return True
        line = buf[pos:end]
        if b"\r" in line or b"\n" in line:
            self._error(BARE_LINE_ENDING)
            return True
        verb = line[:4].upper()
        handler = self._handlers.get(verb)
        if handler is None and verb == b"STAR" and line[4:8].upper() == b"TTLS":
            if len(line) > 8 and line[8] != 0x20:
                self._error(UNRECOGNISED)
            else:
                self._on_starttls(line[9:])
        elif handler is None or (len(line) > 4 and line[4] != 0x20):
            self._error(UNRECOGNISED)
        else:
            handler(line[5:])
        return True

    def _step_auth(self) -> bool:
        """One SASL response line: ``*`` cancels, anything else must be base64."""
        buf = self._buf
        pos = self._pos
        end = buf.find(b"\r\n", pos)
        if end < 0:
            if len(buf) - pos >= MAX_AUTH_LINE:
                self._state = _State.COMMAND
                self._discarding = True
                self._discard_reply = AUTH_LINE_TOO_LONG
                self._buf = b"\r" if buf.endswith(b"\r") else b""
                self._pos = 0
            return False
        self._pos = end + 2
        self._state = _State.COMMAND
        line = buf[pos:end]
        if len(line) > MAX_AUTH_LINE - 2:  # whole in one read: the same limit as in pieces
            self._error(AUTH_LINE_TOO_LONG)
            return True
        if line == b"*":
            self._error(AUTH_CANCELLED)
            return True
        try:
            data = base64.b64decode(line, validate=True)
        except binascii.Error:
            self._error(AUTH_BAD_BASE64)
            return True
        self._decide(AuthResponse(data))
        return True

    def _text(self, arg: bytes) -> str | None:
        """Decode a command argument; None (after answering 501) if it is not clean UTF-8."""
        try:
            text = arg.decode("utf-8")
        except UnicodeDecodeError:
            self._error(Reply(501, "5.5.4", "Invalid UTF-8 in command"))
            return None
        if has_control(text):
            self._error(Reply(501, "5.5.4", "Control characters are not allowed"))
            return None
        return text

    def _hello(self, arg: bytes, extended: bool) -> None:
        text = self._text(arg)
        if text is None:
            return
        name = text.strip(" ")
        if not name:
            self._error(Reply(501, "5.5.4", f"Syntax: {'EHLO' if extended else 'HELO'} hostname"))
            return
        self._reset_transaction()  # RFC 5321 4.1.4: as if RSET
        self._decide(Hello(name, extended))

    def _on_ehlo(self, arg: bytes) -> None:
        self._hello(arg, True)

    def _on_helo(self, arg: bytes) -> None:
        self._hello(arg, False)

    def _on_mail(self, arg: bytes) -> None:
        if not self._greeted:
            self._error(NEED_HELLO)
            return
        if self._sender is not None:
            self._error(NESTED_MAIL)
            return
        if self._config.require_auth and self._authenticated is None:
            self._error(AUTH_REQUIRED)
            return
        limit = self._config.max_connection_messages
        if limit and self._messages >= limit and self._connection_limits:
            self._close(TOO_MANY_MESSAGES)
            return
        text = self._text(arg)
        if text is None:
            return
        if text[:5].upper() != "FROM:":
            self._error(Reply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
            return
        try:
            sender, params = parse_mail(text[5:].rstrip(" "))
        except GrammarError as exc:
            self._error(exc.reply)
            return
        if params.auth is not None and not self._config.auth_mechanisms:
            self._error(Reply(555, "5.5.4", "Unsupported parameter AUTH"))
            return
        if params.size is not None and params.size > self._max_size:
            self._reply(MESSAGE_TOO_BIG)
            return
        self._decide(MailFrom(sender, params))

    def _on_rcpt(self, arg: bytes) -> None:
        if self._sender is None:
            self._error(NEED_MAIL)
            return
        self._rcpt_attempts += 1
        text = self._text(arg)
        if text is None:
            return
        if text[:3].upper() != "TO:":
            self._error(Reply(501, "5.5.4", "Syntax: RCPT TO:<address>"))
            return
        try:
            recipient, params = parse_rcpt(
                text[3:].rstrip(" "), smtputf8=self._mail_params.smtputf8
            )
        except GrammarError as exc:
            self._error(exc.reply)
            return
        if len(self._recipients) >= self._config.max_recipients:
            self._reply(TOO_MANY_RECIPIENTS)
            return
        limit = self._config.max_connection_recipients
        if limit and self._connection_rcpts >= limit and self._connection_limits:
            self._reply(TOO_MANY_CONNECTION_RECIPIENTS)
            return
        self._connection_rcpts += 1
        self._decide(RcptTo(recipient, params))

    def _on_data(self, arg: bytes) -> None:
        if arg.strip(b" "):
            self._error(Reply(501, "5.5.4", "Syntax: DATA"))
        elif self._sender is None:
            self._error(NEED_MAIL)
        elif self._rcpt_attempts == 0:
            self._error(NEED_RCPT)
        elif self._chunking:
            self._error(DATA_AFTER_BDAT)
        elif self._mail_params.body == "BINARYMIME":
            self._error(BINARYMIME_NEEDS_BDAT)
        elif not self._recipients:
            self._reply(NO_VALID_RECIPIENTS)
        else:
            self._reply(DATA_GO_AHEAD)
            self._state = _State.DATA
            self._body_size = 0
            self._body_error = None

    def _on_bdat(self, arg: bytes) -> None:
        match = _BDAT_ARGS.fullmatch(arg)
        if match is None:
            # RFC 3030 2: without a valid size the chunk's end is unknown; hang up.
            self._reply(BDAT_SYNTAX)
            self._close(BDAT_FRAMING_LOST)
            return
        size = int(match.group(1))
        self._bdat_size = self._bdat_remaining = size
        self._bdat_last = match.group(2) is not None
        self._state = _State.BDAT
        if self._sender is None:
            self._bdat_discard = NEED_MAIL
        elif self._rcpt_attempts == 0:
            self._bdat_discard = NEED_RCPT
        elif not self._recipients:
            self._bdat_discard = NO_VALID_RECIPIENTS
        else:
            self._bdat_discard = None
            self._chunking = True
            if self._body_error is None and self._body_size + size > self._max_size:
                self._body_error = MESSAGE_TOO_BIG
                self._body_error_counts = False

    def _on_rset(self, arg: bytes) -> None:
        if arg.strip(b" "):
            self._error(Reply(501, "5.5.4", "Syntax: RSET"))
            return
        self._reset_transaction()
        self._reply(OK)

    def _on_noop(self, arg: bytes) -> None:
        self._reply(OK)

    def _on_quit(self, arg: bytes) -> None:
        self._reply(Reply(221, "2.0.0", f"{self._config.hostname} closing connection"))
        self._close(None)

    def _on_vrfy(self, arg: bytes) -> None:
        if not arg.strip(b" "):
            self._error(SYNTAX_ERROR)
            return
        self._reply(VRFY_REPLY)

    def _on_expn(self, arg: bytes) -> None:
        self._reply(EXPN_REPLY)

    def _on_help(self, arg: bytes) -> None:
        self._reply(HELP_REPLY)

    def _on_starttls(self, arg: bytes) -> None:
        if arg.strip(b" "):
            self._error(STARTTLS_SYNTAX)
        elif self._secure:
            self._error(TLS_ALREADY_ACTIVE)
        elif not self._config.starttls:
            self._error(TLS_NOT_AVAILABLE)
        elif not self._greeted:
            self._error(NEED_HELLO)
        elif self._sender is not None:
            self._error(STARTTLS_IN_TRANSACTION)
        else:
            self._decide(StartTlsRequested())

    def _on_auth(self, arg: bytes) -> None:
        config = self._config
        if not config.auth_mechanisms:
            self._error(AUTH_NOT_AVAILABLE)
        elif not self._greeted:
            self._error(NEED_HELLO)
        elif self._authenticated is not None:
            self._error(AUTH_ALREADY_DONE)
        elif self._sender is not None:
            self._error(AUTH_IN_TRANSACTION)
        elif not self._auth_offered():
            self._error(AUTH_NEEDS_TLS)
        else:
            self._start_auth(arg)

    def _start_auth(self, arg: bytes) -> None:
        parts = arg.strip(b" ").split(b" ")
        if not parts[0] or len(parts) > 2:
            self._error(AUTH_SYNTAX)
            return
        mechanism = parts[0].upper().decode("ascii", "replace")
        if mechanism not in self._config.auth_mechanisms:
            self._error(AUTH_UNKNOWN_MECHANISM)
            return
        initial: bytes | None = None
        if len(parts) == 2:
            if parts[1] == b"=":
                initial = b""  # RFC 4954 4: a zero-length initial response
            else:
                try:
                    initial = base64.b64decode(parts[1], validate=True)
                except binascii.Error:
                    self._error(AUTH_BAD_BASE64)
                    return
        self._decide(AuthRequested(mechanism, initial))

    # --- DATA state ---------------------------------------------------------------------

    def _step_data(self) -> bool:
        if self._body_error is not None:
            return self._skip_data()
        buf = self._buf
        pos = self._pos  # always at the start of a line while the body is clean
        found = framing.find_data_end(buf, pos)
        if found is not None:
            end, resume = found
        else:
            last = buf.rfind(b"\r\n", pos)
            if last < 0:
                if len(buf) - pos >= self._max_line:
                    self._fail_body(self._long_line_reply, counts=True)
                    return True
                return False
            end = resume = last + 2
        if end > pos:
            self._take_content(buf if pos == 0 and end == len(buf) else buf[pos:end])
        self._pos = resume
        if found is not None:
            self._finish_data()
        return True

    def _take_content(self, content: bytes) -> None:
        fault = framing.check_lines(content, self._max_line)
        if fault is framing.TextFault.BARE_LINE_ENDING:
            self._fail_body(BARE_LINE_ENDING_IN_DATA, counts=True)
            return
        if fault is framing.TextFault.LINE_TOO_LONG:
            self._fail_body(self._long_line_reply, counts=True)
            return
        content = framing.unstuff(content)
        size = self._body_size + len(content)
        if size > self._max_size:
            self._fail_body(MESSAGE_TOO_BIG, counts=False)
            return
        self._body_size = size
        self._events.append(MessageData(content))

    def _fail_body(self, reply: Reply, *, counts: bool) -> None:
        """Refuse the body but keep reading to its real end; nothing more is handed out."""
        self._body_error = reply
        self._body_error_counts = counts
        self._tail = framing.CRLF  # failures are found at line starts

    def _skip_data(self) -> bool:
        """Consume a refused body up to CRLF.CRLF, keeping only a few octets."""
        window = self._tail + self._buf[self._pos :]
        t = window.find(framing.TERMINATOR)
        if t < 0:
            self._tail = window[-framing.TERMINATOR_TAIL :]
            self._pos = len(self._buf)
            return False
        self._pos += t + len(framing.TERMINATOR) - len(self._tail)
        self._finish_data()
        return True

    def _finish_data(self) -> None:
        self._state = _State.COMMAND
        self._finish_message(self._body_error)

    def _finish_message(self, error: Reply | None) -> None:
        if error is None:
            self._decide(MessageComplete())
            return
        counts = self._body_error_counts
        self._reply(error)
        self._end_transaction()
        self._events.append(MessageAborted(error))
        if counts:
            self._count_error()

    # --- BDAT state ---------------------------------------------------------------------

    def _step_bdat(self) -> bool:
        remaining = self._bdat_remaining
        if remaining:
            buf = self._buf
            pos = self._pos
            available = len(buf) - pos
            if available == 0:
                return False
            n = remaining if remaining < available else available
            if self._bdat_discard is None and self._body_error is None:
                piece = buf if n == len(buf) else buf[pos : pos + n]
                self._body_size += n
                self._events.append(MessageData(piece))
            self._pos = pos + n
            self._bdat_remaining = remaining - n
            if remaining > n:
                return True
        self._state = _State.COMMAND
        discard = self._bdat_discard
        if discard is not None:
            self._bdat_discard = None
            if discard is NO_VALID_RECIPIENTS:
                self._reply(discard)
            else:
                self._error(discard)
        elif self._bdat_last:
            self._finish_message(self._body_error)
        elif self._body_error is not None:
            self._reply(self._body_error)
        else:
            self._reply(Reply(250, "2.0.0", f"{self._bdat_size} octets received"))
        return True
