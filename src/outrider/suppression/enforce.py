"""What a suppressed recipient's settlement says: pure text and checks, no I/O.

A suppressed recipient is settled as a bounce the moment its message is scheduled: no
attempt, no DSN. Its recorded reply (persisted in the spool with its state) is what keeps
it out of failure notices, even ones built after a restart, the way the operator's
"removed without DSN" reply does; a remote reply never matches because it always comes
with the remote host (``last_mta``), and this one never does.
"""

from __future__ import annotations

import re
import time

from outrider.message.envelope import RcptStatus, Recipient
from outrider.suppression.store import Entry

CATEGORY = "suppressed"  # the bounce category of the accounting row and events
STATUS = "5.7.1"
_REPLY = re.compile(r"550 5\.7\.1 <[^>]*> is suppressed \(")


def reply_text(address: str, entry: Entry) -> str:
    """The text after ``550 5.7.1``: ``<addr> is suppressed (bad-mailbox, 2026-12-03)``."""
    day = time.strftime("%Y-%m-%d", time.gmtime(entry.added))
    where = "" if entry.scope == "*" else f", {entry.scope}"
    return f"<{address}> is suppressed ({entry.reason}, {day}{where})"


def was_suppressed(rcpt: Recipient) -> bool:
    """Whether the recipient was settled by the suppression list (so owes no DSN)."""
    return (
        rcpt.status is RcptStatus.BOUNCED
        and not rcpt.last_mta
        and _REPLY.match(rcpt.last_reply) is not None
    )
