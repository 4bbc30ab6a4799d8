"""A scripted LMTP server (RFC 2033) on loopback TCP or a Unix socket, for tests.

It answers LHLO (EHLO and HELO are refused, as an LMTP server must), offers PIPELINING,
ENHANCEDSTATUSCODES and 8BITMIME, and after the data answers once per recipient
accepted at RCPT, in RCPT order. Replies are scripted per recipient, at RCPT and after
the data; by default everything is accepted::

    script = LmtpScript(rcpt_replies={"nobody@x.test": "550 5.1.1 no such user"},
                        data_replies={"full@x.test": "452 4.2.2 mailbox full"})
    async with LmtpServer(script) as server:           # or LmtpServer(script, path=...)
        ...  # deliver to server.target
        [msg] = await server.wait_for_messages(1)

Each message records its sender, the recipients accepted at RCPT, the ones given a
2xx after the data, and the data (unstuffed). ``peak_connections`` is the most
sessions open at once; ``commands`` every command line in order (for LHLO, RSET, QUIT).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from types import TracebackType

from outrider.delivery.lmtp_client import LmtpTarget

__all__ = ["LmtpMessage", "LmtpScript", "LmtpServer"]


@dataclass
class LmtpScript:
    greeting: str = "220 lmtp.test LMTP ready"
    mail_reply: str = "250 2.1.0 OK"
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # lower-cased address -> reply
    data_replies: dict[str, str] = field(default_factory=dict)  # reply after the data
    data_delay: float = 0.0  # seconds before the replies to the data
    drop_after_data_replies: int | None = None  # close after this many replies to the data


@dataclass
class LmtpMessage:
    sender: str
    recipients: list[str]  # accepted at RCPT
    delivered: list[str]  # given a 2xx after the data
    data: bytes


class LmtpServer:
    def __init__(self, script: LmtpScript | None = None, *, path: str | None = None) -> None:
        self.script = script or LmtpScript()
        self.path = path
        self.messages: list[LmtpMessage] = []
        self.commands: list[str] = []
        self.connections = 0
        self.open_connections = 0
        self.peak_connections = 0
        self._server: asyncio.Server | None = None
        self._port = 0
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def target(self) -> LmtpTarget:
        if self.path is not None:
            return LmtpTarget(path=self.path)
        return LmtpTarget(host="127.0.0.1", port=self._port)

    async def __aenter__(self) -> LmtpServer:
        if self.path is not None:
            self._server = await asyncio.start_unix_server(self._session, self.path)
        else:
            self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
            self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def wait_for_messages(self, count: int, timeout: float = 30) -> list[LmtpMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self.messages)} of {count} LMTP messages arrived")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
        return self.messages[:count]

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self.open_connections += 1
        self.peak_connections = max(self.peak_connections, self.open_connections)
        try:
            await self._dialogue(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_connections -= 1
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._changed.set()

    async def _dialogue(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script = self.script
        writer.write(script.greeting.encode() + b"\r\n")
        sender: str | None = None
        accepted: list[str] = []
        while True:
            line = await reader.readline()
            if not line:
                return
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            self.commands.append(command)
            verb = command[:4].upper()
            if verb == "LHLO":
                writer.write(
                    b"250-lmtp.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
                    b"250 8BITMIME\r\n"
                )
            elif verb in ("EHLO", "HELO"):
                writer.write(b"500 5.5.1 this is an LMTP server: LHLO\r\n")
            elif verb == "MAIL":
                sender = _path(command)
                self._reply(writer, script.mail_reply)
                if not script.mail_reply.startswith("2"):
                    sender = None
            elif verb == "RCPT":
                address = _path(command)
                reply = script.rcpt_replies.get(address.lower(), "250 2.1.5 OK")
                if sender is None:
                    reply = "503 5.5.1 MAIL first"
                self._reply(writer, reply)
                if reply.startswith("2"):
                    accepted.append(address)
            elif verb == "DATA":
                if sender is None or not accepted:
                    writer.write(b"503 5.5.1 no valid recipients\r\n")
                    continue
                writer.write(b"354 go ahead\r\n")
                data = await _read_data(reader)
                if script.data_delay:
                    await asyncio.sleep(script.data_delay)
                if not await self._data_replies(writer, sender, accepted, data):
                    return
                sender, accepted = None, []
            elif verb == "RSET":
                sender, accepted = None, []
                writer.write(b"250 2.0.0 OK\r\n")
            elif verb == "NOOP":
                writer.write(b"250 2.0.0 OK\r\n")
            elif verb == "QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"500 5.5.2 unknown command\r\n")
            await writer.drain()

    async def _data_replies(
        self, writer: asyncio.StreamWriter, sender: str, accepted: list[str], data: bytes
    ) -> bool:
        """One reply per accepted recipient; False when the script drops the session."""
        script = self.script
        delivered: list[str] = []
        message = LmtpMessage(sender, list(accepted), delivered, data)
        self.messages.append(message)
        for n, address in enumerate(accepted):
            if script.drop_after_data_replies is not None and n >= script.drop_after_data_replies:
                await writer.drain()
                self._changed.set()
                return False
            reply = script.data_replies.get(address.lower(), f"250 2.0.0 <{address}> delivered")
            self._reply(writer, reply)
            if reply.startswith("2"):
                delivered.append(address)
        await writer.drain()
        self._changed.set()
        return True

    @staticmethod
    def _reply(writer: asyncio.StreamWriter, reply: str) -> None:
        writer.write(reply.encode() + b"\r\n")


def _path(command: str) -> str:
    start = command.find("<")
    end = command.find(">", start + 1)
    return command[start + 1 : end] if 0 <= start < end else ""


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    lines: list[bytes] = []
    while True:
        line = await reader.readline()
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        if line == b".\r\n":
            return b"".join(lines)
        lines.append(line[1:] if line.startswith(b".") else line)
