"""A message's content as it arrives: in memory while it is small, spilled once it is not.

Up to :data:`~outrider.spool.base.IN_MEMORY_LIMIT` octets, the pieces are kept in a list
and joined once at the end: the relay's hot path does nothing more than that. The piece
that crosses the limit starts the spill: the header section stays in memory as the
*head* (header completion and the message checks read nothing else), everything after
it goes to a spill file in the spool (:mod:`outrider.spool.spill`), and so does every
later piece. The intake then gets a :class:`~outrider.spool.spill.SpilledBody` instead
of bytes.

The header section of a spilled message must end (with its empty line) within the
first ``IN_MEMORY_LIMIT`` octets. A longer one is refused with 552 5.3.4 at the end of
the data (the rest is read and dropped): header completion removes ``X-Job`` and
``X-Virtual-MTA`` wherever they are in it, so it must see all of it, and 256 KiB of
header fields is far beyond any real message's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from outrider.smtp.replies import Reply
from outrider.spool.base import IN_MEMORY_LIMIT
from outrider.spool.spill import SpilledBody, SpillFile

HEADER_TOO_LARGE = Reply(552, "5.3.4", "Message header section too large")

# What the intake takes: the message in memory, or spilled (the header section in
# memory, the rest in the spool).
Content = bytes | SpilledBody

Write = Awaitable[None]


def header_section_end(content: bytes, limit: int) -> int | None:
    """The end of the header section (after the CRLF of its last field; 0 when the
    content starts with the empty line), or None when no empty line starts within the
    first ``limit`` octets."""
    if content.startswith(b"\r\n"):
        return 0
    end = content.find(b"\r\n\r\n", 0, limit)
    return None if end < 0 else end + 2


class ContentBuffer:
    """One transaction's content at a time; the session keeps one for its connection."""

    __slots__ = ("_head", "_limit", "_open_spill", "_pieces", "_refusal", "_size", "_spill")

    def __init__(
        self, open_spill: Callable[[int], SpillFile], limit: int = IN_MEMORY_LIMIT
    ) -> None:
        """``open_spill(head_len)`` gives the file for a spilled tail (``Spool.spill``)."""
        self._open_spill = open_spill
        self._limit = limit
        self._pieces: list[bytes] = []
        self._size = 0
        self._head = b""
        self._spill: SpillFile | None = None
        self._refusal: Reply | None = None

    @property
    def spilled(self) -> bool:
        return self._spill is not None

    def add(self, data: bytes) -> Write | None:
        """Take the next piece. When the content is (now) spilled, returns the write to
        await before the next piece is added; None when it is kept in memory."""
        spill = self._spill
        if spill is not None:
            return spill.write(data)
        if self._refusal is not None:
            return None
        self._pieces.append(data)
        self._size += len(data)
        if self._size <= self._limit:
            return None
        return self._start_spill()

    def _start_spill(self) -> Write | None:
        content = b"".join(self._pieces)
        self._pieces.clear()
        self._size = 0
        end = header_section_end(content, self._limit)
        if end is None:
            self._refusal = HEADER_TOO_LARGE
            return None
        self._head = content[:end]
        spill = self._spill = self._open_spill(end)
        return spill.write(content[end:])

    def take(self) -> Content | Reply:
        """The complete content, or the reply refusing it; the buffer is empty again.
        A spilled body's file is the caller's from now on (stored or discarded)."""
        spill = self._spill
        if spill is not None:
            body = SpilledBody(self._head, spill)
            self._spill = None
            self._head = b""
            return body
        refusal = self._refusal
        if refusal is not None:
            self._refusal = None
            return refusal
        pieces = self._pieces
        content = b"".join(pieces)
        pieces.clear()
        self._size = 0
        return content

    def discard(self) -> None:
        """Drop the content (refused, reset or abandoned), removing a spill file."""
        self._pieces.clear()
        self._size = 0
        self._head = b""
        self._refusal = None
        spill = self._spill
        if spill is not None:
            self._spill = None
            spill.discard()
