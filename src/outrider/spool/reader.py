"""Reading a stored body in chunks, for delivery: a big message is never held whole.

:class:`StoredBody` names where a body lies in its spool file; a transport asks it for
:meth:`~StoredBody.chunks` and writes each one out as it comes. The body's CRC-32 is
checked on the way, *before* the last chunk is given out, so a damaged body fails the
delivery before the consumer could have ended the message (the final dot, or the last
BDAT octet) and the far end never accepts a corrupt copy.

:data:`Body` is what the scheduler hands a transport: the octets themselves (small or
fresh mail, DSNs) or a :class:`StoredBody`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import zlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from outrider.spool.base import CorruptMessageError, UnknownMessageError, error_from_os
from outrider.spool.temps import O_CLOEXEC

CHUNK_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class StoredBody:
    """A body in the spool file ``path``: ``size`` octets from ``offset``, with ``crc``.

    Reusable: each :meth:`chunks` opens the file again (a retry to the next MX host
    reads it again)."""

    queue_id: str
    path: str
    offset: int
    size: int
    crc: int

    async def chunks(self, chunk_size: int = CHUNK_SIZE) -> AsyncGenerator[bytes, None]:
        """The body in order, read off the event loop. Raises
        :class:`~outrider.spool.base.CorruptMessageError` instead of the last chunk when
        the CRC does not match, and the spool's typed errors when the file cannot be read."""
        loop = asyncio.get_running_loop()
        fd = await loop.run_in_executor(None, self._open)
        try:
            pos = 0
            crc = 0
            while pos < self.size:
                want = min(chunk_size, self.size - pos)
                data, crc = await loop.run_in_executor(
                    None, self._read, fd, want, self.offset + pos, crc
                )
                pos += want
                if pos >= self.size and crc != self.crc:
                    raise CorruptMessageError(
                        f"spool file {self.queue_id} is damaged: body checksum mismatch"
                    )
                yield data
        finally:
            os.close(fd)

    async def head(self, limit: int) -> bytes:
        """The first ``limit`` octets (or fewer), unchecked: for a DSN's header copy."""
        loop = asyncio.get_running_loop()
        fd = await loop.run_in_executor(None, self._open)
        try:
            data, _ = await loop.run_in_executor(
                None, self._read, fd, min(limit, self.size), self.offset, 0
            )
        finally:
            os.close(fd)
        return data

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDONLY | O_CLOEXEC)
        except FileNotFoundError as exc:
            raise UnknownMessageError(f"no message {self.queue_id} in the spool") from exc
        except OSError as exc:
            raise error_from_os("read", exc) from exc

    def _read(self, fd: int, size: int, offset: int, crc: int) -> tuple[bytes, int]:
        """``size`` octets at ``offset`` and the running CRC over them (in a thread)."""
        try:
            data = os.pread(fd, size, offset)
            while len(data) < size:
                more = os.pread(fd, size - len(data), offset + len(data))
                if not more:
                    raise CorruptMessageError(
                        f"spool file {self.queue_id} is damaged: body truncated"
                    )
                data += more
        except OSError as exc:
            raise error_from_os("read", exc) from exc
        return data, zlib.crc32(data, crc)


Body = bytes | StoredBody


def body_size(body: Body) -> int:
    return len(body) if isinstance(body, bytes) else body.size


async def body_head(body: Body, limit: int) -> bytes:
    """The first ``limit`` octets of ``body``, whichever form it has."""
    return body[:limit] if isinstance(body, bytes) else await body.head(limit)


async def body_chunks(body: Body, chunk_size: int = CHUNK_SIZE) -> AsyncGenerator[bytes, None]:
    """The octets of ``body`` in order, whichever form it has: for a transport that
    writes a body out as it comes (see docs/extending.md)."""
    if isinstance(body, bytes):
        if body:
            yield body
        return
    async with contextlib.aclosing(body.chunks(chunk_size)) as chunks:
        async for chunk in chunks:
            yield chunk
