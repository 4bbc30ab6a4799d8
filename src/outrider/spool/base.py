"""The spool contract: what the SMTP server and the queue manager rely on.

Every mutating call is durable when it returns; a failure is a :class:`SpoolError` that
carries the SMTP reply the server should give (so the server never has to guess between
451 and 452).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from outrider.message.envelope import Envelope, Recipient
from outrider.smtp.replies import LOCAL_ERROR, Reply

if TYPE_CHECKING:
    from outrider.spool.reader import Body
    from outrider.spool.spill import SpilledBody, SpillFile

INSUFFICIENT_STORAGE = Reply(452, "4.3.1", "Insufficient system storage")

# A body up to this size is held in memory on its way in and out (the relay's hot
# path); a bigger one is spilled to the spool as it is received
# (:mod:`outrider.spool.spill`) and read back in chunks when it is delivered
# (:mod:`outrider.spool.reader`), so memory does not grow with message sizes.
IN_MEMORY_LIMIT = 256 * 1024

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class SpoolError(Exception):
    """The spool could not do what was asked; ``reply`` is what an SMTP client should see."""

    default_reply: Reply = LOCAL_ERROR

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply if reply is not None else self.default_reply


class SpoolFullError(SpoolError):
    """Out of disk space or quota: the client should retry later (or elsewhere)."""

    default_reply = INSUFFICIENT_STORAGE


class SpoolClosedError(SpoolError):
    """The spool was closed (shutdown in progress)."""


class DuplicateMessageError(SpoolError):
    """A message with that queue id is already stored (nothing was overwritten)."""


class UnknownMessageError(SpoolError):
    """No message with that queue id is in the spool."""


class CorruptMessageError(SpoolError):
    """A spool file failed its integrity checks."""


def error_from_os(action: str, exc: OSError) -> SpoolError:
    """Map an ``OSError`` to the typed error (and reply) the SMTP server should use."""
    message = f"spool {action} failed: {exc}"
    if exc.errno in _FULL_ERRNOS:
        return SpoolFullError(message)
    if isinstance(exc, FileNotFoundError):
        return UnknownMessageError(message)
    return SpoolError(message)


class Spool(Protocol):
    async def store(self, envelope: Envelope, body: bytes | SpilledBody) -> None:
        """Persist a new message; on return it survives power loss (the 250 may be sent).
        A spilled body's file becomes the spool's (stored or removed, whatever happens)."""
        ...

    def spill(self, head_len: int) -> SpillFile:
        """A file for the tail of a message being received whose header section, kept in
        memory, is ``head_len`` octets (see :mod:`outrider.spool.spill`)."""
        ...

    async def load_body(self, queue_id: str) -> bytes:
        """The message octets as stored; :class:`UnknownMessageError` if absent."""
        ...

    async def open_body(self, queue_id: str) -> Body:
        """The stored body as a handle to read in chunks (the octets themselves from a
        spool that holds them in memory); :class:`UnknownMessageError` if absent."""
        ...

    async def record(self, envelope: Envelope, recipients: Sequence[Recipient]) -> None:
        """Persist the current state of ``recipients`` (members of ``envelope.recipients``)
        together with the envelope's notice state (``delay_warned``, ``notices``)."""
        ...

    async def remove(self, queue_id: str) -> None:
        """Delete a message whose recipients are all final. Gone on return; durable with
        the next directory sync (a power loss before it may bring the message back, to
        be delivered again)."""
        ...

    def recover(self) -> Iterator[Envelope]:
        """Stream the messages found at startup that are unfinished or still owe a notice
        (bodies are not loaded)."""
        ...

    async def close(self) -> None:
        """Finish pending commits and release resources; later calls fail."""
        ...
