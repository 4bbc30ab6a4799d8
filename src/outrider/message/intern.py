"""One shared copy of strings that many queued messages repeat.

A million queued messages mostly share a handful of senders, client addresses, HELO
names, listeners, virtual MTAs and deferral replies; decoded from JSON (spool recovery,
the hand-off) each would be a string of its own, tens of octets per field per message.
:func:`shared` hands back the first copy seen. The table is bounded: past
:data:`LIMIT` distinct strings it starts again (strings already shared stay valid,
only later copies are no longer merged), so unique values (VERP senders) cost nothing
lasting.
"""

from __future__ import annotations

LIMIT = 65_536

_table: dict[str, str] = {}


def shared(text: str) -> str:
    """``text``, or an equal string handed out before."""
    found = _table.get(text)
    if found is not None:
        return found
    if len(_table) >= LIMIT:
        _table.clear()
    _table[text] = text
    return text
