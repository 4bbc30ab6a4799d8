"""The intake's signing step: prepend a DKIM-Signature per key that signs the message.

Runs in :meth:`outrider.intake.core.Intake.submit` once the header section is complete
(Date, Message-ID, Received) and before the store. An in-memory message (256 KiB at
most) is hashed on the event loop; a spilled one's tail is read back from its spill
file in chunks in the executor, never whole.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from outrider.config.model import DkimSettings
from outrider.dkim.canon import RelaxedBodyHash
from outrider.dkim.select import SigningTable, drop_signatures, keys_to_sign
from outrider.dkim.signer import DEFAULT_HEADERS, SigningKey, header_fields, sign
from outrider.intake.content import Content, header_section_end
from outrider.spool.spill import SpilledBody, SpillFile

log = logging.getLogger("outrider.dkim")
CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class DkimSigner:
    """The configured keys; :attr:`outrider.intake.core.Intake.dkim` holds one (or None
    when no ``[[dkim]]`` is configured)."""

    table: SigningTable
    # Mail Outrider makes from a stored message (list copies) changes signed fields: its
    # own old signatures are dropped and made afresh instead of kept.
    resign: bool = False

    async def apply(self, content: Content, now: float) -> Content:
        """``content`` with the signatures prepended (unchanged when no key signs it)."""
        spilled = not isinstance(content, bytes)
        if isinstance(content, bytes):
            end = header_section_end(content, len(content))
            head = content if end is None else content[:end]
        else:
            head = content.head
        fields = header_fields(head)
        from_value = _first(fields, b"from")
        if self.resign:
            own = {(k.domain, k.selector.lower()) for k in self.table.keys_for_from(from_value)}
            kept = drop_signatures(head, own) if own else head
            if kept is not head:
                if isinstance(content, bytes):
                    content = kept + content[len(head) :]
                    end = None if end is None else end - (len(head) - len(kept))
                else:
                    content = SpilledBody(kept, content.tail)
                head, fields = kept, header_fields(kept)
        keys = keys_to_sign(self.table, from_value, fields)
        if not keys:
            return content
        if isinstance(content, bytes):
            hasher = RelaxedBodyHash()
            if end is not None:
                hasher.update(memoryview(content)[end + 2 :].tobytes())
            body_hash = hasher.digest()
        else:
            loop = asyncio.get_running_loop()
            body_hash = await loop.run_in_executor(None, hash_spilled_tail, content.tail)
        signatures = b"".join(sign(key, head, body_hash, int(now)) for key in keys)
        log.debug("signed d=%s (%d signature(s), spilled=%s)", keys[0].domain, len(keys), spilled)
        if isinstance(content, bytes):
            return signatures + content
        return SpilledBody(signatures + content.head, content.tail)


def signer_from_config(
    entries: Sequence[DkimSettings], *, resign: bool = False
) -> DkimSigner | None:
    """The signer for the loaded ``[[dkim]]`` entries (keys loaded by the config loader);
    None when there are none."""
    if not entries:
        return None
    keys = [
        (
            SigningKey(
                domain=entry.domain,
                selector=entry.selector,
                algorithm=entry.algorithm,
                key=entry.private_key,
                headers=entry.headers or DEFAULT_HEADERS,
            ),
            entry.subdomains,
        )
        for entry in entries
    ]
    return DkimSigner(SigningTable.build(keys), resign=resign)


def _first(fields: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for field_name, raw in fields:
        if field_name == name:
            return raw.partition(b":")[2].replace(b"\r\n", b"").strip().decode("utf-8", "replace")
    return None


def hash_spilled_tail(tail: SpillFile) -> bytes:
    """The relaxed body hash of a spill file's tail (which starts with the empty line
    ending the header section), read in chunks."""
    hasher = RelaxedBodyHash()
    if tail.size == 0:
        return hasher.digest()
    fd = os.open(tail.path, os.O_RDONLY)
    try:
        offset, left = tail.reserve, tail.size
        first = True
        while left > 0:
            chunk = os.pread(fd, min(CHUNK, left), offset)
            if not chunk:
                raise OSError(f"{tail.path}: short read")
            offset += len(chunk)
            left -= len(chunk)
            if first:
                first = False
                chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
            hasher.update(chunk)
    finally:
        os.close(fd)
    return hasher.digest()
