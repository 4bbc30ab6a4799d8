"""Sans-I/O SMTP client: reply parser and client state machine (RFC 5321, 2920, 3030, 3461).

No sockets, no asyncio, no clock: the caller feeds received bytes to
:meth:`SmtpClientConnection.receive_data`, writes whatever
:meth:`SmtpClientConnection.data_to_send` returns, and applies timeouts based on
:attr:`SmtpClientConnection.awaiting`. Keeping the protocol logic pure lets every
dialogue (pipelining order, per-recipient results, refusals) be unit tested byte
for byte, and lets the asyncio driver stay a thin pump.

Typical use::

    conn = SmtpClientConnection("mta.example.org")
    conn.receive_data(b"220 mx ESMTP\\r\\n")        # queues EHLO
    write(conn.data_to_send())
    conn.receive_data(b"250-mx\\r\\n250 PIPELINING\\r\\n")
    tx = conn.start_transaction(envelope, recipients, body)
    write(conn.data_to_send())                      # MAIL+RCPT+DATA in one group
    ...                                             # feed replies until tx.done
    tx.replies                                      # one final Reply per recipient

LMTP (RFC 2033) is the same dialogue with ``SmtpClientConnection(name, lmtp=True)``:
LHLO instead of EHLO (no HELO fallback), and after the end of the data one reply per
recipient accepted at RCPT, in RCPT order, each settling its own recipient
(:attr:`Transaction.accepted` says which recipients those were).

A body too big to hold in memory is streamed: start the transaction with
``StreamedContent(size)``; once ``tx.wants_content`` is set (after the 354, or the RCPT
replies under CHUNKING, where the whole body goes as one ``BDAT <size> LAST``), feed it
with :meth:`SmtpClientConnection.send_content` piece by piece, writing
:meth:`~SmtpClientConnection.data_to_send` after each, and finish with
:meth:`~SmtpClientConnection.end_content`. Dot-stuffing (:class:`DotStuffer`) gives the
same octets as :func:`dot_stuff` on the whole body, however it is cut.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from outrider.message.envelope import Envelope, Notify, Recipient
from outrider.smtp.replies import Reply

__all__ = [
    "DotStuffer",
    "Extensions",
    "Phase",
    "ReplyParser",
    "SmtpClientConnection",
    "SmtpProtocolError",
    "State",
    "StreamedContent",
    "Transaction",
    "dot_stuff",
    "utf8_addr_xtext",
    "xtext_encode",
]

# Replies synthesised locally (never received from the peer).
SMTPUTF8_UNSUPPORTED = Reply(550, "5.6.7", "Remote server does not support SMTPUTF8")
# RFC 3463 5.6.3 "conversion required but not supported": binary MIME content cannot go
# over DATA (NUL, bare CR/LF and long lines do not survive it) and is not converted.
BINARY_UNSUPPORTED = Reply(
    554, "5.6.3", "Binary content (BODY=BINARYMIME) and the next hop offers no BINARYMIME+CHUNKING"
)
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax: CR, LF or NUL in address")
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax: CR, LF or NUL in address")

_FORBIDDEN_IN_LINE = re.compile(r"[\r\n\x00]")
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?= |$)", re.ASCII)
_XTEXT_UNSAFE = re.compile(rb"[^\x21-\x2a\x2c-\x3c\x3e-\x7e]")
_UTF8_XTEXT_UNSAFE = re.compile(r"[\x00-\x20\x2b\x3d\x5c\x7f]")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ANY_EOL = re.compile(rb"\r\n|\r|\n")


class SmtpProtocolError(Exception):
    """The peer sent something that is not a valid SMTP reply."""


class Phase(enum.Enum):
    """What a reply is awaited for; the driver maps each to its RFC 5321 4.5.3.2 timeout."""

    GREETING = "greeting"
    EHLO = "EHLO"
    HELO = "HELO"
    STARTTLS = "STARTTLS"
    RSET = "RSET"
    MAIL = "MAIL FROM"
    RCPT = "RCPT TO"
    DATA_INIT = "DATA"
    DATA_DONE = "end of data"
    QUIT = "QUIT"


class State(enum.Enum):
    GREETING = "greeting"  # waiting for the 220
    HANDSHAKE = "handshake"  # EHLO or HELO outstanding
    READY = "ready"  # idle: a transaction, STARTTLS or QUIT may start
    STARTTLS = "starttls"  # STARTTLS sent, reply outstanding
    TLS_PENDING = "tls-pending"  # peer said 220 to STARTTLS: upgrade, then tls_established()
    TRANSACTION = "transaction"
    QUITTING = "quitting"
    CLOSED = "closed"  # QUIT answered: close the socket
    REFUSED = "refused"  # greeting or EHLO/HELO refused: QUIT politely, then close
    FAILED = "failed"  # 421, protocol error or abort(): drop the connection


# ---------------------------------------------------------------------------
# Encoders


def xtext_encode(value: str) -> str:
    """RFC 3461 xtext: "+", "=", controls, space and non-ASCII octets become ``+XX``."""
    raw = value.encode("utf-8")
    if _XTEXT_UNSAFE.search(raw) is None:
        return value
    return _XTEXT_UNSAFE.sub(lambda m: b"+%02X" % m[0][0], raw).decode("ascii")


def utf8_addr_xtext(value: str) -> str:
    """RFC 6533 utf-8-addr-xtext: non-ASCII kept, "+", "=", "\\\\" and controls as ``\\x{HH}``."""
    return _UTF8_XTEXT_UNSAFE.sub(lambda m: f"\\x{{{ord(m[0]):X}}}", value)


MAX_LINE = 998  # RFC 5322 2.1.1: octets in a line, without its CRLF


def is_binary(body: bytes) -> bool:
    """Whether ``body`` holds what only BINARYMIME may carry (RFC 3030): a NUL, a CR or
    LF that is not part of a CRLF, or a line longer than 998 octets."""
    if b"\0" in body:
        return True
    crlf = body.count(b"\r\n")
    if body.count(b"\r") != crlf or body.count(b"\n") != crlf:
        return True
    if len(body) <= MAX_LINE:
        return False
    return any(len(line) > MAX_LINE for line in body.split(b"\r\n"))


def needs_binarymime(envelope: Envelope, body: bytes | StreamedContent) -> bool:
    """A message received as BODY=BINARYMIME keeps that label unless its content, read
    here, is valid 8-bit MIME after all (then 8BITMIME over DATA is a true label). A
    streamed body is not read ahead: it keeps the label."""
    if not envelope.body_binary:
        return False
    return not isinstance(body, bytes) or is_binary(body)


def dot_stuff(body: bytes) -> list[bytes]:
    """The DATA payload as chunks ready for one ``writelines``, ending with ``CRLF.CRLF``.

    Bare CR and LF are normalised to CRLF first: a lone LF before a ``.`` could
    otherwise let a lenient next hop see a premature end of data (SMTP smuggling).
    All work is done by C-level bytes methods.
    """
    crlf = body.count(b"\r\n")
    if body.count(b"\n") != crlf or body.count(b"\r") != crlf:
        body = _ANY_EOL.sub(b"\r\n", body)
    if body.startswith(b"."):
        body = b"." + body
    body = body.replace(b"\r\n.", b"\r\n..")
    if not body:
        return [b".\r\n"]
    return [body, b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n"]


class DotStuffer:
    """:func:`dot_stuff` for a body given in pieces: the pieces' outputs joined, then
    :meth:`end`, are the octets ``dot_stuff`` makes of the whole body.

    What makes it exact across any cut: a piece's final CR is held back until the next
    piece (it may start a CRLF), and whether the output so far ends a line says whether
    the next piece's first period must be doubled.
    """

    __slots__ = ("_carry", "_empty", "_line_start")

    def __init__(self) -> None:
        self._carry = b""  # a CR that ended the previous piece
        self._line_start = True  # the output so far ends with CRLF (or is empty)
        self._empty = True  # nothing output yet

    def feed(self, piece: bytes) -> bytes:
        """The stuffed octets of ``piece`` (possibly fewer: see the class docstring)."""
        if self._carry:
            piece = self._carry + piece
            self._carry = b""
        if piece.endswith(b"\r"):
            self._carry = b"\r"
            piece = piece[:-1]
        return self._stuff(piece) if piece else b""

    def end(self) -> bytes:
        """The rest, then the end of data (``CRLF.CRLF``, or ``.CRLF`` after a CRLF)."""
        rest = self._stuff(self._carry) if self._carry else b""
        self._carry = b""
        if self._empty:
            return b".\r\n"
        return rest + (b".\r\n" if self._line_start else b"\r\n.\r\n")

    def _stuff(self, data: bytes) -> bytes:
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
            data = _ANY_EOL.sub(b"\r\n", data)
        if self._line_start and data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\r\n.", b"\r\n..")
        self._line_start = data.endswith(b"\r\n")
        self._empty = False
        return data


@dataclass(frozen=True, slots=True)
class StreamedContent:
    """A body of ``size`` octets that the driver feeds in pieces instead of giving it
    to :meth:`SmtpClientConnection.start_transaction` whole."""

    size: int


def _notify_param(notify: Notify) -> str:
    if not notify:
        return "NEVER"
    names = [flag.name for flag in (Notify.SUCCESS, Notify.FAILURE, Notify.DELAY) if flag & notify]
    return ",".join(name for name in names if name)


# ---------------------------------------------------------------------------
# Reply parser


class ReplyParser:
    """Incremental reply parser with a bounded buffer.

    Accepts CRLF or bare LF line ends, ``NNN-`` continuation lines and a final
    ``NNN `` (or bare ``NNN``) line. Anything else raises :class:`SmtpProtocolError`.
    """

    __slots__ = ("_buf", "_code", "_max_line", "_max_lines", "_texts")

    def __init__(self, *, max_line_length: int = 4096, max_lines: int = 256) -> None:
        self._buf = b""
        self._code = 0
        self._texts: list[str] = []
        self._max_line = max_line_length
        self._max_lines = max_lines

    @property
    def has_buffered_data(self) -> bool:
        """True when bytes of an incomplete reply are held (e.g. injected after STARTTLS)."""
        return bool(self._buf or self._texts)

    def feed(self, data: bytes) -> list[Reply]:
        buf = self._buf + data if self._buf else data
        replies: list[Reply] = []
        pos = 0
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
            if end - pos > self._max_line:
                raise SmtpProtocolError(f"reply line longer than {self._max_line} octets")
            reply = self._line(buf[pos:end])
            if reply is not None:
                replies.append(reply)
            pos = nl + 1
        rest = buf[pos:] if pos else buf
        if len(rest) - rest.endswith(b"\r") > self._max_line:  # its CR may end a full line
            raise SmtpProtocolError(f"reply line longer than {self._max_line} octets")
        self._buf = bytes(rest)
        return replies

    def _line(self, line: bytes) -> Reply | None:
        if len(line) < 3 or not line[:3].isdigit() or line[0] not in b"2345":
            raise SmtpProtocolError(f"malformed reply line {line[:80]!r}")
        sep = line[3:4]
        if sep not in (b" ", b"-", b""):
            raise SmtpProtocolError(f"malformed reply line {line[:80]!r}")
        code = int(line[:3])
        if not self._texts and sep != b"-":
            # A one-line reply, nearly every reply to a transaction: no list to gather.
            return _one_line_reply(code, line[4:].decode("utf-8", "replace"))
        if self._texts and code != self._code:
            raise SmtpProtocolError(f"multi-line reply changed code from {self._code} to {code}")
        self._code = code
        self._texts.append(line[4:].decode("utf-8", "replace"))
        if sep == b"-":
            if len(self._texts) >= self._max_lines:
                raise SmtpProtocolError(f"reply longer than {self._max_lines} lines")
            return None
        texts, self._texts = self._texts, []
        return _make_reply(code, texts)


def _one_line_reply(code: int, text: str) -> Reply:
    """:func:`_make_reply` of a single line (the enhanced code, when there is one, is
    followed by a space or ends the line: the pattern's look-ahead makes sure)."""
    match = _ENHANCED.match(text)
    if match is None or int(match[1]) != code // 100:
        return Reply(code, "", text)
    enhanced = match[0]
    return Reply(code, enhanced, text[len(enhanced) + 1 :])


def _make_reply(code: int, texts: list[str]) -> Reply:
    match = _ENHANCED.match(texts[0])
    if match is None or int(match[1]) != code // 100:
        return Reply(code, "", "\n".join(texts))
    enhanced = match[0]
    stripped = []
    for text in texts:
        if text.startswith(enhanced) and (len(text) == len(enhanced) or text[len(enhanced)] == " "):
            text = text[len(enhanced) + 1 :]
        stripped.append(text)
    return Reply(code, enhanced, "\n".join(stripped))


# ---------------------------------------------------------------------------
# Extensions


@dataclass(frozen=True, slots=True)
class Extensions:
    """What the peer's EHLO reply offers. HELO peers get the all-false default."""

    pipelining: bool = False
    size: int | None = None  # None: SIZE not offered; 0: offered without a limit
    eightbitmime: bool = False
    smtputf8: bool = False
    chunking: bool = False
    binarymime: bool = False
    starttls: bool = False
    dsn: bool = False
    enhancedstatuscodes: bool = False
    keywords: dict[str, str] = field(default_factory=dict)  # every keyword -> its parameters

    @classmethod
    def from_ehlo(cls, reply: Reply) -> Extensions:
        keywords: dict[str, str] = {}
        for line in reply.lines()[1:]:
            keyword, _, params = line.strip().partition(" ")
            if keyword:
                keywords[keyword.upper()] = params.strip()
        size: int | None = None
        if "SIZE" in keywords:
            param = keywords["SIZE"]
            size = int(param) if param.isascii() and param.isdigit() else 0
        return cls(
            pipelining="PIPELINING" in keywords,
            size=size,
            eightbitmime="8BITMIME" in keywords,
            smtputf8="SMTPUTF8" in keywords,
            chunking="CHUNKING" in keywords,
            binarymime="BINARYMIME" in keywords,
            starttls="STARTTLS" in keywords,
            dsn="DSN" in keywords,
            enhancedstatuscodes="ENHANCEDSTATUSCODES" in keywords,
            keywords=keywords,
        )


# ---------------------------------------------------------------------------
# Transaction


@dataclass(eq=False, slots=True)
class Transaction:
    """One message on the wire. ``replies[i]`` is the final reply for ``recipients[i]``.

    A recipient accepted at RCPT is not final until the reply to the data, which then
    applies to every accepted recipient (under LMTP each gets its own; ``data_reply`` is
    the last one received).
    """

    recipients: list[Recipient]
    replies: list[Reply | None]
    mail_reply: Reply | None = None
    data_reply: Reply | None = None
    done: bool = False
    body_sent: bool = False  # the message content was queued for sending
    accepted: list[int] = field(default_factory=list)  # recipient indexes given 2xx at RCPT
    rcpt_order: list[int] = field(default_factory=list)  # indexes sent as RCPT, in order
    mail_command: bytes = b""
    rcpt_commands: list[bytes] = field(default_factory=list)
    body: bytes = b""
    pipelined: bool = False
    chunking: bool = False
    binary: bool = False  # sent as BODY=BINARYMIME (BDAT only)
    rcpt_sent: int = 0
    rcpt_answered: int = 0
    discard_data: bool = False  # 354 with nobody accepted: we send an empty body and ignore it
    size: int = 0  # octets of content
    streamed: bool = False  # the driver feeds the content (StreamedContent)
    wants_content: bool = False  # streamed: the driver is to feed it now (send_content)
    content_sent: int = 0  # streamed octets fed so far
    stuffer: DotStuffer | None = None  # streamed under DATA
    data_answered: int = 0  # LMTP: per-recipient replies received after the data

    def final_replies(self) -> list[Reply]:
        """Per-recipient replies; only valid once ``done``."""
        if not self.done:
            raise RuntimeError("transaction still in progress")
        return [reply if reply is not None else _NO_REPLY for reply in self.replies]

    def _settle(self, indexes: Sequence[int], reply: Reply) -> None:
        for i in indexes:
            if self.replies[i] is None:
                self.replies[i] = reply


_NO_REPLY = Reply(451, "4.4.2", "No reply received for this recipient")


# ---------------------------------------------------------------------------
# Connection state machine


class SmtpClientConnection:
    """Client side of one SMTP connection, h2-style: feed bytes in, take bytes out.

    Every method that produces commands appends them to an output list so a group
    of pipelined commands (or a body plus its end-of-data) leaves in one write.
    Remote misbehaviour never raises: it moves the connection to ``FAILED`` with
    :attr:`error` set and settles the open transaction. Calling a method in the
    wrong state is a local bug and raises :class:`RuntimeError`.
    """

    def __init__(self, helo_name: str, *, lmtp: bool = False) -> None:
        if not helo_name or _FORBIDDEN_IN_LINE.search(helo_name) or " " in helo_name:
            raise ValueError(f"invalid HELO name {helo_name!r}")
        self.helo_name = helo_name
        self.lmtp = lmtp  # RFC 2033: LHLO, and one reply per accepted recipient after DATA
        self.state = State.GREETING
        self.greeting: Reply | None = None
        self.ehlo_reply: Reply | None = None  # the last 250 answer to EHLO (or HELO)
        self.error: Reply | None = None  # why the connection is REFUSED or FAILED
        self.error_from_peer = False  # error is the peer's reply, not a local diagnostic
        self.extensions = Extensions()
        self.esmtp = False
        self.tls_active = False
        self.starttls_reply: Reply | None = None  # non-220 answer to STARTTLS, if any
        self.transactions = 0  # transactions completed on this connection
        self._parser = ReplyParser()
        self._out: list[bytes] = []
        self._pending: deque[Phase] = deque([Phase.GREETING])
        self._tx: Transaction | None = None
        self._next_tx: Transaction | None = None  # pipelined behind _tx's end of data
        self._needs_reset = False
        self.last_transaction: Transaction | None = None  # the latest start_transaction's

    # -- I/O surface ---------------------------------------------------------

    @property
    def awaiting(self) -> Phase | None:
        """The phase of the oldest command still waiting for its reply."""
        return self._pending[0] if self._pending else None

    @property
    def can_overlap(self) -> bool:
        """Another transaction may start now, pipelined behind the current one.

        True when PIPELINING is in use and the current message's content, end of data
        included, is already queued, so that only its final reply is outstanding: the
        next MAIL, RCPT and DATA (RFC 2920 3.1: message content may start a group)
        then go out without waiting for that reply, one round trip per message
        instead of two. The final reply resets the server's transaction whatever it
        says, so no RSET is needed. Never under LMTP (one reply per recipient).
        """
        tx = self._tx
        return (
            self.state is State.TRANSACTION
            and tx is not None
            and self._next_tx is None
            and tx.pipelined
            and tx.body_sent
            and not tx.wants_content
            and not self.lmtp
            and len(self._pending) == 1
            and self._pending[0] is Phase.DATA_DONE
        )

    def data_to_send(self) -> list[bytes]:
        """Chunks to write, in order, with a single ``writelines``; empties the queue."""
        out, self._out = self._out, []
        return out

    def receive_data(self, data: bytes) -> list[Reply]:
        """Parse ``data`` and advance the state machine; returns the replies parsed."""
        if self.state in (State.CLOSED, State.FAILED):
            return []
        try:
            replies = self._parser.feed(data)
        except SmtpProtocolError as exc:
            self._protocol_error(f"{exc}")
            return []
        last = len(replies) - 1
        for i, reply in enumerate(replies):
            state = self._handle(reply)
            if state is State.FAILED:
                break
            if state is State.TLS_PENDING and i < last:
                # Replies after the 220 were sent in clear but would be read as if over TLS.
                self._protocol_error("data after STARTTLS reply")
                break
        return replies

    def abort(self, reply: Reply) -> None:
        """The transport failed (timeout, connection lost): settle everything with ``reply``."""
        if self.state is not State.FAILED:
            self._fail(reply, from_peer=False)

    # -- commands ------------------------------------------------------------

    def starttls(self) -> None:
        self._require(State.READY)
        if self.tls_active:
            raise RuntimeError("TLS already active")
        self._send(b"STARTTLS\r\n", Phase.STARTTLS)
        self.state = State.STARTTLS

    def tls_established(self) -> None:
        """The transport is now TLS: forget what was learnt in clear and EHLO again."""
        self._require(State.TLS_PENDING)
        self.tls_active = True
        self.extensions = Extensions()
        self._parser = ReplyParser()
        self._send_ehlo()

    def quit(self) -> None:
        if self.state not in (State.READY, State.REFUSED) or self._pending:
            raise RuntimeError(f"cannot QUIT in state {self.state.value}")
        self._send(b"QUIT\r\n", Phase.QUIT)
        self.state = State.QUITTING

    def start_transaction(
        self,
        envelope: Envelope,
        recipients: Sequence[Recipient],
        body: bytes | StreamedContent,
    ) -> Transaction:
        """Queue one message; the returned transaction is ``done`` when all replies are in.

        Refusals decided locally (SMTPUTF8 unsupported, too big, CR/LF/NUL in an
        address) settle recipients without touching the wire. A
        :class:`StreamedContent` body is fed later (see the module docstring).
        Allowed when ``READY``, or while :attr:`can_overlap` (the new transaction's
        commands are then queued behind the current one's end of data).
        """
        overlap = self.can_overlap
        if not overlap:
            self._require(State.READY)
        rcpts = list(recipients)
        ext = self.extensions
        if isinstance(body, bytes):
            tx = Transaction(recipients=rcpts, replies=[None] * len(rcpts), body=body)
            size = len(body)
        else:
            size = body.size
            tx = Transaction(recipients=rcpts, replies=[None] * len(rcpts), streamed=True)
        tx.size = size
        tx.binary = needs_binarymime(envelope, body)
        self.last_transaction = tx
        everyone = range(len(rcpts))

        utf8 = envelope.smtputf8 or not envelope.sender.isascii()
        utf8 = utf8 or any(not r.address.isascii() for r in rcpts)
        if _FORBIDDEN_IN_LINE.search(envelope.sender):
            tx._settle(everyone, BAD_SENDER_SYNTAX)
        elif utf8 and not ext.smtputf8:
            tx._settle(everyone, SMTPUTF8_UNSUPPORTED)
        elif ext.size and size > ext.size:
            too_big = Reply(552, "5.3.4", f"Message size {size} exceeds remote limit of {ext.size}")
            tx._settle(everyone, too_big)
        elif tx.binary and not (ext.binarymime and ext.chunking):
            tx._settle(everyone, BINARY_UNSUPPORTED)
        else:
            for i, rcpt in enumerate(rcpts):
                if not rcpt.address or _FORBIDDEN_IN_LINE.search(rcpt.address):
                    tx.replies[i] = BAD_RECIPIENT_SYNTAX
                else:
                    tx.rcpt_order.append(i)
                    tx.rcpt_commands.append(self._rcpt_command(rcpt, utf8))
        if not tx.rcpt_order:
            tx.done = True
            return tx

        tx.pipelined = ext.pipelining
        tx.chunking = ext.chunking
        tx.mail_command = self._mail_command(envelope, size, utf8, tx.binary)
        if overlap:
            self._next_tx = tx
            self._send_transaction_start(tx)
            return tx
        self._tx = tx
        self.state = State.TRANSACTION
        if self._needs_reset:
            # RSET between messages: pipelined ahead of MAIL when allowed, else its own turn.
            self._send(b"RSET\r\n", Phase.RSET)
            if not tx.pipelined:
                return tx
        self._send_transaction_start(tx)
        return tx

    def send_content(self, piece: bytes) -> None:
        """Queue the next piece of a streamed body (``tx.wants_content``)."""
        tx = self._streaming()
        tx.content_sent += len(piece)
        if tx.content_sent > tx.size:
            raise RuntimeError(f"content longer than the {tx.size} octets announced")
        if tx.stuffer is not None:
            piece = tx.stuffer.feed(piece)
        if piece:
            self._out.append(piece)

    def end_content(self) -> None:
        """The streamed body is complete: queue the end of data (DATA's final dot)."""
        tx = self._streaming()
        if tx.content_sent != tx.size:
            raise RuntimeError(f"content is {tx.content_sent} octets, {tx.size} announced")
        tx.wants_content = False
        if tx.stuffer is not None:
            self._out.append(tx.stuffer.end())

    def _streaming(self) -> Transaction:
        tx = self._tx
        if tx is None or not tx.wants_content or self.state is not State.TRANSACTION:
            raise RuntimeError("no streamed content is wanted now")
        return tx

    # -- internals -----------------------------------------------------------

    def _send_transaction_start(self, tx: Transaction) -> None:
        self._send(tx.mail_command, Phase.MAIL)
        if tx.pipelined:
            for command in tx.rcpt_commands:
                self._send(command, Phase.RCPT)
            tx.rcpt_sent = len(tx.rcpt_commands)
            if not tx.chunking:
                self._send(b"DATA\r\n", Phase.DATA_INIT)

    def _mail_command(
        self, envelope: Envelope, size: int, utf8: bool, binary: bool = False
    ) -> bytes:
        ext = self.extensions
        parts = [f"MAIL FROM:<{envelope.sender}>"]
        if ext.size is not None:
            parts.append(f"SIZE={size}")
        if binary:
            parts.append("BODY=BINARYMIME")  # only reached when offered, with CHUNKING
        elif envelope.body_8bit and ext.eightbitmime:
            parts.append("BODY=8BITMIME")
        if utf8 and ext.smtputf8:
            parts.append("SMTPUTF8")
        if ext.dsn:
            if envelope.ret is not None:
                parts.append(f"RET={envelope.ret.value}")
            if envelope.envid:
                parts.append(f"ENVID={xtext_encode(envelope.envid)}")
        return (" ".join(parts) + "\r\n").encode("utf-8")

    def _rcpt_command(self, rcpt: Recipient, utf8: bool) -> bytes:
        parts = [f"RCPT TO:<{rcpt.address}>"]
        if self.extensions.dsn:
            if rcpt.notify is not None:
                parts.append(f"NOTIFY={_notify_param(rcpt.notify)}")
            orcpt = self._orcpt_param(rcpt.orcpt, utf8)
            if orcpt:
                parts.append(orcpt)
        return (" ".join(parts) + "\r\n").encode("utf-8")

    def _orcpt_param(self, orcpt: str | None, utf8: bool) -> str:
        if not orcpt:
            return ""
        addr_type, sep, address = orcpt.partition(";")
        if not sep or not address or not _ADDR_TYPE.fullmatch(addr_type):
            return ""
        if addr_type.lower() == "utf-8":
            # kept as received: already utf-8-addr-xtext or -unitext (RFC 6533), which the
            # server checked; never xtext-encoded again
            wire_ok = address.isascii() or (utf8 and self.extensions.smtputf8)
            return f"ORCPT=utf-8;{address}" if wire_ok else ""
        if address.isascii():
            return f"ORCPT={addr_type};{xtext_encode(address)}"
        if utf8 and self.extensions.smtputf8:
            return f"ORCPT=utf-8;{utf8_addr_xtext(address)}"  # an rfc822 one received as such
        return ""  # not representable for this peer; ORCPT is optional

    def _send(self, command: bytes, phase: Phase) -> None:
        self._out.append(command)
        self._pending.append(phase)

    def _send_ehlo(self) -> None:
        verb = "LHLO" if self.lmtp else "EHLO"
        self._send(f"{verb} {self.helo_name}\r\n".encode("ascii", "replace"), Phase.EHLO)
        self.state = State.HANDSHAKE

    def _require(self, state: State) -> None:
        if self.state is not state:
            raise RuntimeError(f"expected state {state.value}, connection is {self.state.value}")

    def _protocol_error(self, detail: str) -> None:
        self._fail(Reply(451, "4.5.0", f"Protocol error: {detail}"), from_peer=False)

    def _fail(self, reply: Reply, *, from_peer: bool = True) -> None:
        self.state = State.FAILED
        self.error = reply
        self.error_from_peer = from_peer
        self._pending.clear()
        self._out.clear()
        for tx in (self._tx, self._next_tx):
            if tx is not None:
                tx._settle(range(len(tx.replies)), reply)
                tx.done = True
        self._tx = self._next_tx = None

    def _refuse(self, reply: Reply) -> None:
        self.state = State.REFUSED
        self.error = reply
        self.error_from_peer = True
        self._pending.clear()

    def _handle(self, reply: Reply) -> State:
        if not self._pending:
            if reply.code == 421:
                self._fail(reply)
            else:
                self._protocol_error(f"unexpected reply {reply}")
        else:
            phase = self._pending.popleft()
            if reply.code == 421 and phase is not Phase.QUIT:
                self._fail(reply)
            else:
                _HANDLERS[phase](self, reply)
        return self.state

    def _on_greeting(self, reply: Reply) -> None:
        self.greeting = reply
        if reply.code == 220:
            self._send_ehlo()
        else:
            self._refuse(reply)

    def _on_ehlo(self, reply: Reply) -> None:
        if reply.code == 250:
            self.ehlo_reply = reply
            self.extensions = Extensions.from_ehlo(reply)
            self.esmtp = True
            self.state = State.READY
        elif reply.is_permanent and not self.lmtp:
            self._send(f"HELO {self.helo_name}\r\n".encode("ascii", "replace"), Phase.HELO)
        else:
            self._refuse(reply)

    def _on_helo(self, reply: Reply) -> None:
        if reply.code == 250:
            self.ehlo_reply = reply
            self.extensions = Extensions()
            self.esmtp = False
            self.state = State.READY
        else:
            self._refuse(reply)

    def _on_starttls(self, reply: Reply) -> None:
        if reply.code == 220:
            if self._parser.has_buffered_data or self._pending:
                # Plaintext bytes after the 220 would be read as if they came over TLS.
                self._protocol_error("data after STARTTLS reply")
            else:
                self.state = State.TLS_PENDING
        else:
            self.starttls_reply = reply
            self.state = State.READY

    def _on_quit(self, reply: Reply) -> None:
        self.state = State.CLOSED

    def _on_rset(self, reply: Reply) -> None:
        tx = self._tx
        if reply.code != 250 or tx is None:
            self._protocol_error(f"RSET answered {reply}")
            return
        self._needs_reset = False
        if not tx.pipelined:
            self._send_transaction_start(tx)

    def _on_mail(self, reply: Reply) -> None:
        tx = self._current()
        tx.mail_reply = reply
        if not reply.is_positive:
            tx._settle(tx.rcpt_order, reply)
            if not tx.pipelined:
                self._finish(tx)
            return
        if not tx.pipelined:
            self._send_next_rcpt(tx)

    def _send_next_rcpt(self, tx: Transaction) -> None:
        self._send(tx.rcpt_commands[tx.rcpt_sent], Phase.RCPT)
        tx.rcpt_sent += 1

    def _on_rcpt(self, reply: Reply) -> None:
        tx = self._current()
        index = tx.rcpt_order[tx.rcpt_answered]
        tx.rcpt_answered += 1
        if tx.mail_reply is not None and tx.mail_reply.is_positive:
            if reply.is_positive:
                tx.accepted.append(index)
            else:
                tx.replies[index] = reply
        if tx.rcpt_answered < len(tx.rcpt_order):
            if not tx.pipelined:
                self._send_next_rcpt(tx)
            return
        # All RCPT replies are in.
        mail_ok = tx.mail_reply is not None and tx.mail_reply.is_positive
        if tx.pipelined and not tx.chunking:
            return  # the DATA reply is already on its way
        if not mail_ok or not tx.accepted:
            self._finish(tx)
        elif tx.chunking:
            self._out.append(b"BDAT %d LAST\r\n" % tx.size)
            if tx.streamed:
                self._want_content(tx)
            else:
                self._send(tx.body, Phase.DATA_DONE)
                self._expect_more_data_replies(tx)
            tx.body_sent = True
        else:
            self._send(b"DATA\r\n", Phase.DATA_INIT)

    def _on_data_init(self, reply: Reply) -> None:
        tx = self._current()
        if reply.code == 354:
            if tx.accepted and tx.mail_reply is not None and tx.mail_reply.is_positive:
                if tx.streamed:
                    tx.stuffer = DotStuffer()
                    self._want_content(tx)
                else:
                    chunks = dot_stuff(tx.body)
                    self._out.extend(chunks[:-1])
                    self._send(chunks[-1], Phase.DATA_DONE)
                    self._expect_more_data_replies(tx)
                tx.body_sent = True
            else:
                # Server accepted DATA with nobody to deliver to: end it empty, ignore the result.
                tx.discard_data = True
                self._send(b".\r\n", Phase.DATA_DONE)
        elif reply.is_positive:
            self._protocol_error(f"DATA answered {reply}")
        else:
            if tx.accepted:
                tx.data_reply = reply
                tx._settle(tx.accepted, reply)
            self._finish(tx)

    def _want_content(self, tx: Transaction) -> None:
        """The driver streams the body now; its end is answered as DATA_DONE."""
        tx.wants_content = True
        self._pending.append(Phase.DATA_DONE)
        self._expect_more_data_replies(tx)

    def _expect_more_data_replies(self, tx: Transaction) -> None:
        """LMTP answers the end of data once per accepted recipient: one DATA_DONE is
        queued already, the others follow it."""
        if self.lmtp:
            self._pending.extend([Phase.DATA_DONE] * (len(tx.accepted) - 1))

    def _on_data_done(self, reply: Reply) -> None:
        tx = self._current()
        if tx.wants_content:
            # Answered before the content was all sent: never a delivery, and the
            # session is out of step (the rest would be read as commands).
            if reply.is_positive:
                self._protocol_error(f"{reply} before the end of the message content")
            else:
                tx.data_reply = reply
                tx._settle(tx.accepted, reply)
                self._fail(reply)
            return
        if tx.discard_data:
            self._finish(tx)
        elif self.lmtp:
            # RFC 2033 4.2: one reply per accepted recipient, in RCPT order.
            index = tx.accepted[tx.data_answered]
            tx.data_answered += 1
            tx.data_reply = reply
            tx._settle([index], reply)
            if tx.data_answered == len(tx.accepted):
                self._finish(tx)
        else:
            tx.data_reply = reply
            tx._settle(tx.accepted, reply)
            self._finish(tx)

    def _current(self) -> Transaction:
        if self._tx is None:  # pragma: no cover - guarded by the pending queue
            raise RuntimeError("no transaction in progress")
        return self._tx

    def _finish(self, tx: Transaction) -> None:
        tx.done = True
        self._needs_reset = True
        self.transactions += 1
        if self._next_tx is not None:
            # The pipelined next transaction's replies follow: it becomes the current one.
            self._tx, self._next_tx = self._next_tx, None
            return
        self._tx = None
        self.state = State.READY


_HANDLERS = {
    Phase.GREETING: SmtpClientConnection._on_greeting,
    Phase.EHLO: SmtpClientConnection._on_ehlo,
    Phase.HELO: SmtpClientConnection._on_helo,
    Phase.STARTTLS: SmtpClientConnection._on_starttls,
    Phase.RSET: SmtpClientConnection._on_rset,
    Phase.MAIL: SmtpClientConnection._on_mail,
    Phase.RCPT: SmtpClientConnection._on_rcpt,
    Phase.DATA_INIT: SmtpClientConnection._on_data_init,
    Phase.DATA_DONE: SmtpClientConnection._on_data_done,
    Phase.QUIT: SmtpClientConnection._on_quit,
}
