"""Handing stored messages from receiver processes to the queue manager.

A receiver process stores the message durably in the shared spool, then sends the
serialised envelope over a Unix stream socket; the delivery process schedules it and
delivers it. A frame is two 4-byte big-endian lengths, the envelope codec's bytes and
the message itself, so fresh mail is never read back from disk; a message over
``MAX_INLINE_BODY`` is sent without its body (length 0) and read from the spool when it
is delivered. A frame with both lengths 0 says "this receiver is listening"; lengths
(0, 1) ask the delivery process to look for stored messages it was not told about.
The frames of one event-loop turn (a group commit completes several stores at once) go
out in one write, and the delivery process takes every whole frame from each read.

Nothing stored is lost when the channel fails. The receiver answers 250 once the
message is on disk, whatever happens to its frame; a frame lost with a broken channel
(or a receiver killed between the store and the frame) leaves a spool file the
delivery process does not know. So whenever a receiver's channel ends, and whenever a
receiver that reconnected asks, the delivery process scans the spool for such files
(:func:`outrider.spool.orphans.find_orphans`) and schedules them; a receiver whose
channel broke reconnects by itself. If the delivery process itself is gone, the
recovery at the next start finds the files.
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
_READY = _HEADER.pack(0, 0)
_ADOPT = _HEADER.pack(0, 1)
MAX_ENVELOPE = 64 * 1024 * 1024
MAX_INLINE_BODY = 1024 * 1024
_READ_SIZE = 256 * 1024


def frame(envelope: Envelope, body: bytes | None) -> bytes:
    payload = encode_envelope(envelope)
    if body is None or len(body) > MAX_INLINE_BODY:
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

    def __init__(
        self,
        path: str,
        submit: Callable[[Envelope, bytes | None], None],
        adopt: Callable[[], None] | None = None,
    ) -> None:
        """``adopt``: look for stored messages nobody handed over (called when a channel
        ends, or a receiver asks)."""
        self.path = path
        self.submit = submit
        self.adopt = adopt
        self.server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.ready = 0  # receivers that said they are listening
        self.ready_pids: set[int] = set()  # their process ids (the socket's peer credentials)
        self.ready_changed = asyncio.Event()
        self._stopping = False

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
        # Read what is there and take every whole frame from it: one await per read, not
        # two per frame (a group commit in a receiver hands over a burst at once).
        buffer = bytearray()
        try:
            while True:
                chunk = await reader.read(_READ_SIZE)
                if not chunk:
                    return
                buffer += chunk
                if not self._frames(buffer, writer):
                    log.error("handoff: oversized frame; dropping channel")
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._clients.discard(task)
            writer.close()
            if not self._stopping:
                # A frame may have died with the channel (or its receiver).
                self._adopt()

    def _frames(self, buffer: bytearray, writer: asyncio.StreamWriter) -> bool:
        """Handle every complete frame at the start of ``buffer`` and remove it; False for
        a frame too big to accept (the channel is then dropped)."""
        view = memoryview(buffer)
        pos = 0
        size = len(buffer)
        try:
            while size - pos >= _HEADER.size:
                env_len, body_len = _HEADER.unpack_from(view, pos)
                if env_len == 0:
                    pos += _HEADER.size
                    if body_len == 1:
                        self._adopt()
                    else:
                        self._ready(writer)
                    continue
                if env_len > MAX_ENVELOPE or body_len > MAX_INLINE_BODY:
                    return False
                end = pos + _HEADER.size + env_len + body_len
                if end > size:
                    break
                start = pos + _HEADER.size
                pos = end
                try:
                    envelope = decode_envelope(bytes(view[start : start + env_len]))
                except Exception:
                    log.exception("handoff: undecodable envelope; it will be recovered at restart")
                    continue
                self.submit(envelope, bytes(view[start + env_len : end]) or None)
        finally:
            view.release()
            del buffer[:pos]
        return True

    def _ready(self, writer: asyncio.StreamWriter) -> None:
        self.ready += 1
        pid = peer_pid(writer)
        if pid:
            self.ready_pids.add(pid)
        self.ready_changed.set()

    def _adopt(self) -> None:
        if self.adopt is not None:
            try:
                self.adopt()
            except Exception:
                log.exception("handoff: cannot look for unscheduled messages")

    async def stop(self) -> None:
        self._stopping = True
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
    """Runs in a receiver process; the sink of its intake.

    Watches its channel: when the delivery process closes it, the client reconnects
    (with a growing pause) and then asks the delivery process to adopt what was stored
    meanwhile. While disconnected, :meth:`accept` raises
    :class:`~outrider.intake.sink.SinkUnavailableError`; the intake still answers 250
    (the message is on disk) and the adoption schedules it."""

    RECONNECT_FIRST = 0.05
    RECONNECT_MAX = 2.0

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str = ""
    ) -> None:
        self.path = path
        self.reader = reader
        self.writer = writer
        self.missed = 0  # messages stored while disconnected, not yet adopted
        self._closing = False
        self._ready_sent = False
        # Frames of this event-loop turn, written together by one call_soon (one system
        # call, and one wake-up of the delivery process, for a group commit's burst).
        self._pending: list[bytes] = []
        self._watch: asyncio.Task[None] | None = None
        if path:
            self._watch = asyncio.get_running_loop().create_task(
                self._watch_channel(), name="handoff-watch"
            )

    @classmethod
    async def connect(cls, path: str) -> HandoffClient:
        reader, writer = await asyncio.open_unix_connection(path)
        return cls(reader, writer, path)

    @property
    def connected(self) -> bool:
        return not self.writer.is_closing()

    def send_ready(self) -> None:
        self._ready_sent = True
        self.writer.write(_READY)

    def send(self, envelope: Envelope, body: bytes | None) -> None:
        if self.writer.is_closing():
            raise ConnectionError("delivery process is gone")
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._write_pending)
        self._pending.append(frame(envelope, body))

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        if self.writer.is_closing():
            # Stored already: the adoption after the reconnect schedules them.
            self.missed += len(pending)
            return
        self.writer.write(b"".join(pending) if len(pending) > 1 else pending[0])

    def accept(self, envelope: Envelope, body: bytes | None) -> None:
        """:class:`~outrider.intake.Sink`: hand a stored message to the delivery process."""
        try:
            self.send(envelope, body)
        except ConnectionError as exc:
            self.missed += 1
            raise SinkUnavailableError("delivery process unavailable") from exc

    async def _watch_channel(self) -> None:
        """The delivery process never writes: end of stream means the channel is gone."""
        while not self._closing:
            with contextlib.suppress(ConnectionError):
                while await self.reader.read(4096):
                    pass
            if self._closing:
                return
            self.writer.close()
            log.error("handoff: channel to the delivery process lost; reconnecting")
            await self._reconnect()

    async def _reconnect(self) -> None:
        pause = self.RECONNECT_FIRST
        while not self._closing:
            await asyncio.sleep(pause)
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
            except OSError as exc:
                log.debug("handoff: reconnect failed: %s", exc)
                pause = min(pause * 2, self.RECONNECT_MAX)
                continue
            self.reader, self.writer = reader, writer
            if self._ready_sent:
                writer.write(_READY)
            # Even with nothing missed here: a frame written just before the channel
            # broke may never have been read.
            writer.write(_ADOPT)
            log.info(
                "handoff: reconnected; %d message(s) stored meanwhile are adopted from the spool",
                self.missed,
            )
            self.missed = 0
            return

    async def close(self) -> None:
        self._closing = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        self._write_pending()
        with contextlib.suppress(Exception):
            await self.writer.drain()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
