"""A scripted SMTP server on loopback, for tests of anything that sends mail.

By default it is a sink: it accepts every message, offers PIPELINING, SIZE,
8BITMIME, SMTPUTF8, CHUNKING, DSN, ENHANCEDSTATUSCODES (and STARTTLS when given a
server ``ssl.SSLContext``, e.g. from trustme) and records each message as a
:class:`ReceivedMessage`. A :class:`ServerScript` changes that: a fixed greeting,
replies for MAIL, per recipient, for DATA and after the data, a phase at which to
``hang`` (never answer) or ``drop`` (close the connection; ``"body"`` drops in the
middle of the message content), and extensions to leave out::

    script = ServerScript(rcpt_replies={"bad@x.test": "550 5.1.1 no such user"})
    async with ScriptedSmtpServer(script) as server:
        ...  # deliver to server.host, server.port
        [msg] = await server.wait_for_messages(1)

From blocking code or when the client is a subprocess, run it in its own thread::

    with ScriptedSmtpServer().run_in_thread() as server:
        ...
        server.wait_for_messages_sync(10, timeout=5)

Reply strings are SMTP reply lines (``"550 5.1.1 no such user"``); ``\\n`` separates
the lines of a multi-line reply. ``"hang"`` or ``"drop"`` as a reply string scripts
that behaviour for the one command. ``server.script`` may be replaced at any time;
connections read it at each decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, cast

__all__ = ["ReceivedMessage", "ScriptedSmtpServer", "ServerScript", "SessionRecord"]

ServerPhase = Literal[
    "greeting",
    "ehlo",
    "helo",
    "starttls",
    "mail",
    "rcpt",
    "data",  # the reply to the DATA command
    "body",  # while the message content arrives (DATA or BDAT)
    "data_done",  # the reply after the complete message
    "rset",
    "quit",
]

ALL_EXTENSIONS = (
    "PIPELINING",
    "SIZE",
    "8BITMIME",
    "SMTPUTF8",
    "CHUNKING",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "STARTTLS",
)
_MAX_LINE = 8192


@dataclass
class ServerScript:
    greeting: str = "220 mx.test ESMTP scripted test server"
    greeting_by_peer: dict[str, str] = field(default_factory=dict)  # client IP -> greeting
    ehlo_reply: str | None = None  # replaces the whole EHLO reply, e.g. "502 5.5.1 no EHLO"
    mail_reply: str | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # lower-cased address -> reply
    data_command_reply: str | None = None  # reply to the DATA command instead of 354
    data_reply: str | None = None  # reply after the message content
    hang_at: ServerPhase | None = None
    drop_at: ServerPhase | None = None
    omit_extensions: frozenset[str] = frozenset()  # e.g. {"PIPELINING", "CHUNKING"}
    extra_extensions: tuple[str, ...] = ()  # offered after the others, e.g. ("BINARYMIME",)
    max_size: int = 50 * 1024 * 1024


@dataclass(frozen=True)
class ReceivedMessage:
    peer: tuple[str, int]
    local: tuple[str, int]
    helo: str
    esmtp: bool
    tls: bool
    mail_from: str
    mail_params: dict[str, str]  # upper-cased keyword -> value ("" for valueless ones)
    rcpts: tuple[str, ...]  # accepted recipients only
    rcpt_params: tuple[dict[str, str], ...]
    data: bytes  # message content, dot-unstuffed (DATA) or as sent (BDAT)
    bdat: bool
    arrived_at: float
    session: int  # index into ScriptedSmtpServer.sessions


@dataclass
class SessionRecord:
    """One connection: who, whether TLS was used, and every command line received."""

    peer: tuple[str, int]
    local: tuple[str, int]
    helo: str = ""
    tls: bool = False
    tls_version: str | None = None
    commands: list[str] = field(default_factory=list)
    closed: bool = False


def _wire(reply: str) -> bytes:
    lines = reply.split("\n")
    code = lines[0][:3]
    out = [f"{code}-{line[4:]}" for line in lines[:-1]]
    out.append(lines[-1])
    return ("\r\n".join(out) + "\r\n").encode("utf-8")


def _parse_path(arg: str) -> tuple[str, dict[str, str]] | None:
    arg = arg.strip()
    if not arg.startswith("<"):
        return None
    close = arg.find(">")
    if close < 0:
        return None
    params: dict[str, str] = {}
    for token in arg[close + 1 :].split():
        key, _, value = token.partition("=")
        params[key.upper()] = value
    return arg[1:close], params


class _Connection(asyncio.Protocol):
    def __init__(self, server: ScriptedSmtpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.record: SessionRecord | None = None
        self.session = -1
        self.closed = asyncio.get_running_loop().create_future()
        self._buf = b""
        self._dead = False  # hung or dropped: ignore everything
        self._upgrading = False
        self._refused = False
        self._helo = ""
        self._esmtp = False
        self._reset()
        self._mode: Literal["command", "data", "bdat"] = "command"
        self._scan = 0
        self._bdat_left = 0
        self._bdat_last = False
        self._chunks: list[bytes] = []

    def _reset(self) -> None:
        self._mail: tuple[str, dict[str, str]] | None = None
        self._rcpts: list[str] = []
        self._rcpt_params: list[dict[str, str]] = []
        self._chunks = []

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.session, self.record = self.server._connection_opened(self)
        script = self.server.script
        if self._scripted("greeting", None):
            return
        greeting = script.greeting_by_peer.get(self.record.peer[0], script.greeting)
        self._write(_wire(greeting))
        if greeting.startswith("421"):
            self._close()
        elif not greeting.startswith("2"):
            self._refused = True

    def data_received(self, data: bytes) -> None:
        if self._dead:
            return
        self._buf += data  # while upgrading, only decrypted data can arrive: keep it
        if self._upgrading:
            return
        out: list[bytes] = []
        self._process(out)
        if out and not self._dead:
            self._write(b"".join(out))

    def connection_lost(self, exc: Exception | None) -> None:
        self._dead = True
        self.server._connection_closed(self)
        if not self.closed.done():
            self.closed.set_result(None)

    # -- helpers -------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        self._dead = True
        if self.transport is not None:
            self.transport.close()

    def _scripted(
        self, phase: ServerPhase, reply: str | None, out: list[bytes] | None = None
    ) -> bool:
        """Apply hang/drop for ``phase`` (or a "hang"/"drop" reply); True when applied."""
        script = self.server.script
        if script.drop_at == phase or reply == "drop":
            if out:
                self._write(b"".join(out))
                out.clear()
            self._dead = True
            if self.transport is not None:
                self.transport.abort()
            return True
        if script.hang_at == phase or reply == "hang":
            if out:
                self._write(b"".join(out))
                out.clear()
            self._dead = True  # keep the socket open, never read or answer again
            if self.transport is not None:
                self.transport.pause_reading()
            return True
        return False

    def _reply(
        self, out: list[bytes], phase: ServerPhase, scripted: str | None, default: str
    ) -> bool:
        if self._scripted(phase, scripted, out):
            return False
        out.append(_wire(scripted if scripted is not None else default))
        return True

    # -- input processing ----------------------------------------------------

    def _process(self, out: list[bytes]) -> None:
        buf = self._buf
        pos = 0
        while not self._dead and not self._upgrading:
            if self._mode == "data":
                if pos < len(buf) and self._scripted("body", None, out):
                    return
                if buf.startswith(b".\r\n", pos):
                    end, content = pos + 3, b""
                else:
                    i = buf.find(b"\r\n.\r\n", max(pos, self._scan))
                    if i < 0:
                        self._scan = max(pos, len(buf) - 4)
                        break
                    end, content = i + 5, buf[pos : i + 2]
                pos = end
                self._mode = "command"
                self._scan = 0
                if content.startswith(b".."):
                    content = content[1:]
                self._finish_message(out, content.replace(b"\r\n..", b"\r\n."), bdat=False)
            elif self._mode == "bdat":
                if self._bdat_left and pos < len(buf) and self._scripted("body", None, out):
                    return
                take = min(self._bdat_left, len(buf) - pos)
                self._chunks.append(buf[pos : pos + take])
                pos += take
                self._bdat_left -= take
                if self._bdat_left:
                    break
                self._mode = "command"
                self._bdat_done(out)
            else:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if len(buf) - pos > _MAX_LINE:
                        out.append(_wire("500 5.5.2 Line too long"))
                        self._write(b"".join(out))
                        out.clear()
                        self._close()
                    break
                line = buf[pos:nl].rstrip(b"\r").decode("utf-8", "replace")
                pos = nl + 1
                self._command(out, line)
                if self._upgrading:
                    pos = len(buf)  # RFC 3207: discard anything pipelined after STARTTLS
        self._buf = buf[pos:]
        self._scan = max(0, self._scan - pos)

    def _command(self, out: list[bytes], line: str) -> None:
        assert self.record is not None
        self.record.commands.append(line)
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        script = self.server.script
        if verb == "QUIT":
            if self._reply(out, "quit", None, "221 2.0.0 Bye"):
                self._write(b"".join(out))
                out.clear()
                self._close()
            return
        if self._refused:
            out.append(_wire("503 5.5.1 Bad sequence of commands"))
            return
        if verb == "EHLO":
            self._reset()
            if self._reply(out, "ehlo", script.ehlo_reply, self._ehlo_text()):
                self._helo = arg.strip()
                self._esmtp = script.ehlo_reply is None or script.ehlo_reply.startswith("2")
                self.record.helo = self._helo
        elif verb == "HELO":
            self._reset()
            if self._reply(out, "helo", None, "250 mx.test"):
                self._helo, self._esmtp = arg.strip(), False
                self.record.helo = self._helo
        elif verb == "STARTTLS":
            self._starttls(out)
        elif verb == "RSET":
            self._reset()
            self._reply(out, "rset", None, "250 2.0.0 OK")
        elif verb == "NOOP":
            out.append(_wire("250 2.0.0 OK"))
        elif verb == "MAIL":
            self._mail_command(out, arg)
        elif verb == "RCPT":
            self._rcpt_command(out, arg)
        elif verb == "DATA":
            self._data_command(out)
        elif verb == "BDAT":
            self._bdat_command(out, arg)
        else:
            out.append(_wire("500 5.5.2 Command unrecognized"))

    def _ehlo_text(self) -> str:
        script = self.server.script
        offered = [
            ext
            for ext in ALL_EXTENSIONS
            if ext not in script.omit_extensions
            and (ext != "STARTTLS" or (self.server.tls_context is not None and not self._tls))
        ]
        offered += list(script.extra_extensions)
        lines = [f"250 mx.test Hello {self._peer_host}"]
        lines += [
            f"250 SIZE {script.max_size}" if ext == "SIZE" else f"250 {ext}" for ext in offered
        ]
        return "\n".join(lines)

    @property
    def _tls(self) -> bool:
        return self.record is not None and self.record.tls

    @property
    def _peer_host(self) -> str:
        return self.record.peer[0] if self.record is not None else ""

    def _mail_command(self, out: list[bytes], arg: str) -> None:
        parsed = _parse_path(arg[5:]) if arg[:5].upper() == "FROM:" else None
        if not self._helo:
            out.append(_wire("503 5.5.1 Send EHLO first"))
        elif self._mail is not None:
            out.append(_wire("503 5.5.1 Nested MAIL command"))
        elif parsed is None:
            out.append(_wire("501 5.5.4 Syntax: MAIL FROM:<address>"))
        elif parsed[1].get("SIZE", "0").isdigit() and int(parsed[1].get("SIZE", "0")) > (
            self.server.script.max_size
        ):
            out.append(_wire("552 5.3.4 Message size exceeds fixed maximum message size"))
        else:
            reply = self.server.script.mail_reply
            if self._reply(out, "mail", reply, "250 2.1.0 OK") and (reply or "2").startswith("2"):
                self._mail = parsed

    def _rcpt_command(self, out: list[bytes], arg: str) -> None:
        parsed = _parse_path(arg[3:]) if arg[:3].upper() == "TO:" else None
        if self._mail is None:
            out.append(_wire("503 5.5.1 Need MAIL before RCPT"))
        elif parsed is None or not parsed[0]:
            out.append(_wire("501 5.5.4 Syntax: RCPT TO:<address>"))
        else:
            reply = self.server.script.rcpt_replies.get(parsed[0].lower())
            if self._reply(out, "rcpt", reply, "250 2.1.5 OK") and (reply or "2").startswith("2"):
                self._rcpts.append(parsed[0])
                self._rcpt_params.append(parsed[1])

    def _data_command(self, out: list[bytes]) -> None:
        if self._mail is None:
            out.append(_wire("503 5.5.1 Need MAIL command"))
        elif not self._rcpts:
            out.append(_wire("554 5.5.1 No valid recipients"))
        else:
            reply = self.server.script.data_command_reply
            if self._reply(out, "data", reply, "354 End data with <CR><LF>.<CR><LF>") and (
                reply is None or reply.startswith("3")
            ):
                self._mode = "data"

    def _bdat_command(self, out: list[bytes], arg: str) -> None:
        parts = arg.split()
        if not parts or not parts[0].isdigit() or len(parts) > 2:
            out.append(_wire("501 5.5.4 Syntax: BDAT size [LAST]"))
            self._close()  # the chunk length is unknown: cannot resynchronise
            return
        self._bdat_left = int(parts[0])
        self._bdat_last = len(parts) == 2 and parts[1].upper() == "LAST"
        self._mode = "bdat"

    def _bdat_done(self, out: list[bytes]) -> None:
        if self._mail is None or not self._rcpts:
            self._chunks = []
            out.append(_wire("503 5.5.1 No valid recipients"))
        elif self._bdat_last:
            content, self._chunks = b"".join(self._chunks), []
            self._finish_message(out, content, bdat=True)
        else:
            out.append(_wire(f"250 2.0.0 {sum(map(len, self._chunks))} octets received"))

    def _finish_message(self, out: list[bytes], content: bytes, *, bdat: bool) -> None:
        script = self.server.script
        mail = self._mail
        assert mail is not None and self.transport is not None and self.record is not None
        too_big = len(content) > script.max_size
        reply = script.data_reply
        if too_big and reply is None:
            reply = "552 5.3.4 Message size exceeds fixed maximum message size"
        if not self._reply(out, "data_done", reply, "250 2.0.0 OK queued"):
            return
        if reply is None or reply.startswith("2"):
            self.server._message_received(
                ReceivedMessage(
                    peer=self.record.peer,
                    local=self.record.local,
                    helo=self._helo,
                    esmtp=self._esmtp,
                    tls=self.record.tls,
                    mail_from=mail[0],
                    mail_params=mail[1],
                    rcpts=tuple(self._rcpts),
                    rcpt_params=tuple(self._rcpt_params),
                    data=content,
                    bdat=bdat,
                    arrived_at=time.time(),
                    session=self.session,
                )
            )
        self._reset()

    def _starttls(self, out: list[bytes]) -> None:
        ctx = self.server.tls_context
        if ctx is None or "STARTTLS" in self.server.script.omit_extensions:
            out.append(_wire("502 5.5.1 STARTTLS not offered"))
        elif self._tls:
            out.append(_wire("503 5.5.1 TLS already active"))
        elif self._reply(out, "starttls", None, "220 2.0.0 Ready to start TLS"):
            self._write(b"".join(out))
            out.clear()
            self._upgrading = True
            if self.transport is not None:
                self.transport.pause_reading()  # nothing more in clear; start_tls resumes
            self.server._spawn(self._upgrade(ctx))

    async def _upgrade(self, ctx: ssl.SSLContext) -> None:
        assert self.transport is not None and self.record is not None
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self.transport, self, ctx, server_side=True, ssl_handshake_timeout=10
            )
        except (OSError, ssl.SSLError):
            transport = None
        if transport is None:
            self.server.tls_failures += 1
            self._dead = True
            self.transport.abort()
            self.connection_lost(None)  # start_tls replaced our protocol: report it ourselves
            return
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        self.record.tls = True
        self.record.tls_version = ssl_object.version() if ssl_object is not None else None
        self._helo = ""
        self._reset()
        self._upgrading = False
        if self._buf:  # the client spoke first over TLS before start_tls() returned here
            out: list[bytes] = []
            self._process(out)
            if out and not self._dead:
                self._write(b"".join(out))


class ScriptedSmtpServer:
    """Loopback SMTP server; safe to inspect from any thread (see module docstring)."""

    def __init__(
        self,
        script: ServerScript | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.script = script if script is not None else ServerScript()
        self.host = host
        self.port = port
        self.tls_context = tls_context
        self.connections = 0
        self.current_connections = 0
        self.max_concurrent = 0
        self.tls_failures = 0
        self.sessions: list[SessionRecord] = []
        self._messages: list[ReceivedMessage] = []
        self._lock = threading.Condition()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], int]] = []
        self._server: asyncio.Server | None = None
        self._conns: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> ScriptedSmtpServer:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and cut every connection, hung ones included."""
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.abort()
        pending = [conn.closed for conn in self._conns if not conn.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=5)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def __aenter__(self) -> ScriptedSmtpServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start_in_thread(self) -> ScriptedSmtpServer:
        """Serve from a background thread with its own event loop; returns once listening."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop())
                loop.close()

        self._thread = threading.Thread(target=run, name="scripted-smtp", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[ScriptedSmtpServer]:
        self.start_in_thread()
        try:
            yield self
        finally:
            self.stop_thread()

    # -- observation ---------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    def wait_for_messages_sync(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until ``count`` messages have arrived; raises TimeoutError otherwise."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(f"{len(self._messages)} of {count} messages arrived")
            return list(self._messages)

    async def wait_for_messages(
        self,
        count: int,
        timeout: float = 5.0,
    ) -> list[ReceivedMessage]:
        """Wait (from any event loop) until ``count`` messages have arrived."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop, fut, count)
        with self._lock:
            if len(self._messages) >= count:
                return list(self._messages)
            self._async_waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise TimeoutError(f"{len(self.messages)} of {count} messages arrived") from None
        finally:
            with self._lock:
                if entry in self._async_waiters:
                    self._async_waiters.remove(entry)
        return self.messages

    # -- called by connections (server loop) ---------------------------------

    def _connection_opened(self, conn: _Connection) -> tuple[int, SessionRecord]:
        assert conn.transport is not None
        peer = conn.transport.get_extra_info("peername")[:2]
        local = conn.transport.get_extra_info("sockname")[:2]
        record = SessionRecord(peer=(peer[0], peer[1]), local=(local[0], local[1]))
        self._conns.add(conn)
        with self._lock:
            self.connections += 1
            self.current_connections += 1
            self.max_concurrent = max(self.max_concurrent, self.current_connections)
            self.sessions.append(record)
            return len(self.sessions) - 1, record

    def _connection_closed(self, conn: _Connection) -> None:
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        with self._lock:
            self.current_connections -= 1
            if conn.record is not None:
                conn.record.closed = True

    def _message_received(self, message: ReceivedMessage) -> None:
        with self._lock:
            self._messages.append(message)
            self._lock.notify_all()
            ready = [w for w in self._async_waiters if len(self._messages) >= w[2]]
        for loop, fut, _ in ready:
            loop.call_soon_threadsafe(_resolve, fut)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
