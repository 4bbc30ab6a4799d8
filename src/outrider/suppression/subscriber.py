"""Auto-add: hard bounces for a bad mailbox or domain suppress the recipient for its sender.

An event subscriber (see :mod:`outrider.events.bus`): a ``Bounced`` event, not expired,
whose category is ``bad-mailbox`` or ``bad-domain`` adds the recipient to the list of the
message's sender domain (never the global one; the null sender has no list). The batch
is one SQLite transaction.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence

from outrider.events.types import Bounced, Event
from outrider.suppression.store import (
    SuppressionError,
    SuppressionStore,
    normalize_address,
    scope_of_sender,
)

log = logging.getLogger("outrider.suppression")

AUTO_CATEGORIES = frozenset({"bad-mailbox", "bad-domain"})
# Until the bounce classifier fills ``category`` on every event: the two enhanced status
# codes that name these categories unambiguously (RFC 3463: bad destination mailbox
# address, bad destination system address). Used only when ``category`` is "".
_FALLBACK = {"5.1.1": "bad-mailbox", "5.1.2": "bad-domain"}


def auto_category(event: Bounced) -> str:
    """The category that suppresses this bounce's recipient, or ""."""
    if event.expired:
        return ""
    category = event.category or _FALLBACK.get(event.status, "")
    return category if category in AUTO_CATEGORIES else ""


class AutoSuppress:
    def __init__(self, store: SuppressionStore) -> None:
        self.store = store
        self.enabled = True

    def handle(self, events: Sequence[Event]) -> None:
        if not self.enabled:
            return
        rows: list[tuple[str, str, str]] = []
        for event in events:
            if type(event) is not Bounced:
                continue
            category = auto_category(event)
            scope = scope_of_sender(event.message.sender) if category else ""
            if not scope:
                continue
            try:
                rows.append((normalize_address(event.recipient), scope, category))
            except SuppressionError:
                continue
        if not rows:
            return
        try:
            self.store.add_many(rows, source="bounce")
        except sqlite3.Error as exc:
            log.error(
                "suppression list %s: cannot add %d bounce(s): %s", self.store.path, len(rows), exc
            )
