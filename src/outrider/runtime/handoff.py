"""Handing stored messages from receiver processes to the queue manager.

A receiver process stores the message durably in the shared spool, then sends the
serialised envelope over a Unix stream socket; the delivery process schedules it and
delivers it. A frame is two 4-byte big-endian lengths, the envelope codec's bytes and
the message itself, so fresh mail is never read back from disk; a message over
``MAX_INLINE_BODY`` is sent without its body (length 0) and read from the spool when it
is delivered. A frame with both lengths 0 says "this receiver is listening". If
the delivery process is gone, nothing is lost: recovery at the next start finds the
spool file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable

from outrider.intake.sink import SinkUnavailableError
from outrider.message.envelope import Envelope
from outrider.spool.codec import decode_envelope, encode_envelope

log = logging.getLogger("outrider.handoff")

_HEADER = struct.Struct(">II")
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
MAX_ENVELOPE = 64 * 1024 * 1024
MAX_INLINE_BODY = 1024 * 1024


def frame(envelope: Envelope, body: bytes) -> bytes:
    payload = encode_envelope(envelope)
    if len(body) > MAX_INLINE_BODY:
        body = b""
    return _HEADER.pack(len(payload), len(body)) + payload + body


def peer_pid(writer: asyncio.StreamWriter) -> int:
    """The process id at the other end of a Unix socket; 0 when unknown."""
    sock = writer.get_extra_info("socket")
    try:
        cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except (AttributeError, OSError):
        return 0
    pid: int = _PEERCRED.unpack(cred)[0]
    return pid


class HandoffServer:
    """Runs in the delivery process; calls ``submit`` for every envelope received."""

    def __init__(self, path: str, submit: Callable[[Envelope, bytes | None], None]) -> None:
        self.path = path
        self.submit = submit
        self.server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.ready = 0  # receivers that said they are listening
        self.ready_pids: set[int] = set()  # their process ids (the socket's peer credentials)
        self.ready_changed = asyncio.Event()

    async def start(self) -> None:
        # Mode 0600: whoever can connect can queue mail, so only the daemon's user may.
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._client, path=self.path)
        finally:
            os.umask(old)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while True:
                try:
                    header = await reader.readexactly(_HEADER.size)
                except asyncio.IncompleteReadError:
                    return
                env_len, body_len = _HEADER.unpack(header)
                if env_len == 0:
                    self.ready += 1
                    pid = peer_pid(writer)
                    if pid:
                        self.ready_pids.add(pid)
                    self.ready_changed.set()
                    continue
                if env_len > MAX_ENVELOPE or body_len > MAX_INLINE_BODY:
                    log.error("handoff: oversized frame; dropping channel")
                    return
                payload = await reader.readexactly(env_len + body_len)
                try:
                    envelope = decode_envelope(payload[:env_len])
                except Exception:
                    log.exception("handoff: undecodable envelope; it will be recovered at restart")
                    continue
                self.submit(envelope, payload[env_len:] or None)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._clients.discard(task)
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        for task in list(self._clients):
            task.cancel()
        for task in list(self._clients):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class HandoffClient:
    """Runs in a receiver process; the sink of its intake."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    @classmethod
    async def connect(cls, path: str) -> HandoffClient:
        _, writer = await asyncio.open_unix_connection(path)
        return cls(writer)

    def send_ready(self) -> None:
        self.writer.write(_HEADER.pack(0, 0))

    def send(self, envelope: Envelope, body: bytes) -> None:
        if self.writer.is_closing():
            raise ConnectionError("delivery process is gone")
        self.writer.write(frame(envelope, body))

    def accept(self, envelope: Envelope, body: bytes) -> None:
        """:class:`~outrider.intake.Sink`: hand a stored message to the delivery process."""
        try:
            self.send(envelope, body)
        except ConnectionError as exc:
            raise SinkUnavailableError("delivery process unavailable") from exc

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.writer.drain()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
