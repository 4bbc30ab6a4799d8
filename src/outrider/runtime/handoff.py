"""Handing stored messages from receiver processes to the queue manager.

A receiver process stores the message durably in the shared spool, then sends the
serialised envelope over a Unix stream socket; the delivery process schedules it and
reads the body from the spool when it delivers. Frames are a 4-byte big-endian length
and the envelope codec's bytes; an empty frame says "this receiver is listening". If
the delivery process is gone, nothing is lost: recovery at the next start finds the
spool file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import Callable

from outrider.message.envelope import Envelope
from outrider.spool.codec import decode_envelope, encode_envelope

log = logging.getLogger("outrider.handoff")

_LEN = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024


def frame(envelope: Envelope) -> bytes:
    payload = encode_envelope(envelope)
    return _LEN.pack(len(payload)) + payload


class HandoffServer:
    """Runs in the delivery process; calls ``submit`` for every envelope received."""

    def __init__(self, path: str, submit: Callable[[Envelope], None]) -> None:
        self.path = path
        self.submit = submit
        self.server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.ready = 0  # receivers that said they are listening
        self.ready_changed = asyncio.Event()

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._client, path=self.path)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while True:
                try:
                    header = await reader.readexactly(_LEN.size)
                except asyncio.IncompleteReadError:
                    return
                (length,) = _LEN.unpack(header)
                if length == 0:
                    self.ready += 1
                    self.ready_changed.set()
                    continue
                if length > MAX_FRAME:
                    log.error("handoff: oversized frame (%d bytes); dropping channel", length)
                    return
                payload = await reader.readexactly(length)
                try:
                    envelope = decode_envelope(payload)
                except Exception:
                    log.exception("handoff: undecodable envelope; it will be recovered at restart")
                    continue
                self.submit(envelope)
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
    """Runs in a receiver process."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    @classmethod
    async def connect(cls, path: str) -> HandoffClient:
        _, writer = await asyncio.open_unix_connection(path)
        return cls(writer)

    def send_ready(self) -> None:
        self.writer.write(_LEN.pack(0))

    def send(self, envelope: Envelope) -> None:
        if self.writer.is_closing():
            raise ConnectionError("delivery process is gone")
        self.writer.write(frame(envelope))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.writer.drain()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
