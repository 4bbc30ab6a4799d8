"""Which delivery status notifications a message owes, and whom each reports on.

Kinds are one letter, also used as the suffix of the DSN's derived queue id.
"""

from __future__ import annotations

from outrider.dsn.builder import should_bounce, wants_dsn
from outrider.message.envelope import Envelope, RcptStatus, Recipient
from outrider.suppression.enforce import was_suppressed

FAILED, DELAYED, RELAYED = "F", "D", "S"

# The reply recorded on a recipient the operator deleted without a bounce. It is
# persisted with the recipient's state, so no failure notice reports the recipient,
# even one built after a restart.
REMOVED_WITHOUT_DSN = "550 5.0.0 Removed from the queue by the operator (no DSN)"
REMOVED_WITH_DSN = "550 5.0.0 Removed from the queue by the operator"


def reports_failure(rcpt: Recipient) -> bool:
    """Whether a failure notice reports this recipient."""
    return (
        rcpt.status is RcptStatus.BOUNCED
        and wants_dsn(rcpt, "failed")
        and rcpt.last_reply != REMOVED_WITHOUT_DSN
        and not was_suppressed(rcpt)
    )


def notice_id(queue_id: str, kind: str) -> str:
    """The queue id of the DSN of ``kind`` for ``queue_id``: derived, so a crash between
    storing it and clearing the notice is recognised at recovery."""
    return f"{queue_id}-{kind}"


def final_notices(env: Envelope) -> str:
    """The notices a message owes once every recipient is final ("" for none)."""
    if not should_bounce(env):
        return ""
    kinds = ""
    if any(reports_failure(r) for r in env.recipients):
        kinds += FAILED
    if any(r.relayed_owed and r.status is RcptStatus.DELIVERED for r in env.recipients):
        kinds += RELAYED
    return kinds


def notice_recipients(env: Envelope, kind: str) -> list[Recipient]:
    """Whom a notice of ``kind`` reports on."""
    if kind == FAILED:
        return [r for r in env.recipients if reports_failure(r)]
    if kind == RELAYED:
        return [r for r in env.recipients if r.relayed_owed and r.status is RcptStatus.DELIVERED]
    return [r for r in env.recipients if r.status is RcptStatus.PENDING and wants_dsn(r, "delayed")]
