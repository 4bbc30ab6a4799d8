"""The consumer: a message for a bounce domain becomes events and suppressions.

Runs in the delivery process, called by :class:`~outrider.feedback.transport.BounceTransport`
for each recipient at a bounce domain. It never fails a delivery: whatever the content,
the message is consumed (a message that cannot be parsed is logged and dropped, and
counted in :attr:`FeedbackConsumer.counts`), so mail to a bounce domain is never relayed
and never bounced back.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from outrider.events.types import Event
from outrider.feedback.decide import Classify, Context, Decision, decide
from outrider.feedback.reports import ArfReport, ReportError, parse_report
from outrider.feedback.verp import Verp, VerpError
from outrider.feedback.verp import decode as verp_decode
from outrider.policy.bounce_category import classify as default_classify
from outrider.suppression.store import SuppressionError, SuppressionStore
from outrider.unsubscribe.apply import apply_unsubscribe
from outrider.unsubscribe.token import TokenError

log = logging.getLogger("outrider.feedback")


@dataclass
class FeedbackConsumer:
    """``secrets``: bounce domain -> its VERP key; ``unsubscribe_secret``: the key of
    unsubscribe tokens (None: mailto unsubscribes are not configured, and ignored)."""

    secrets: Mapping[str, bytes]
    store: SuppressionStore | None
    publish: Callable[[Event], None]
    hostname: str
    classify: Classify = default_classify
    auto_add: Callable[[], bool] = lambda: True
    unsubscribe_secret: Callable[[], bytes | None] = lambda: None
    unsubscribe_max_age: Callable[[], float | None] = lambda: None  # [unsubscribe] max-age
    clock: Callable[[], float] = time.time
    counts: Counter[str] = field(default_factory=Counter)

    def verp(self, address: str) -> Verp | None:
        domain = address.rpartition("@")[2].lower()
        secret = self.secrets.get(domain)
        if secret is None or "+" not in address:
            return None
        try:
            return verp_decode(secret, address)
        except VerpError as exc:
            log.info("bounce domain: %s", exc)
            return None

    def consume(self, recipient: str, data: bytes, queue_id: str = "") -> Decision | None:
        """Handle one message to ``recipient`` (at a bounce domain); None when dropped."""
        self.counts["consumed"] += 1
        try:
            report = parse_report(data)
        except ReportError as exc:
            self.counts["dropped"] += 1
            log.warning("%s: to <%s>: dropped, not a message: %s", queue_id, recipient, exc)
            return None
        verp = self.verp(recipient)
        if verp is None and isinstance(report, ArfReport):
            # A feedback loop reports to its registered address; the returned original
            # still has our VERP return path.
            verp = self.verp(report.original_mail_from) or self.verp(report.returned.sender)
        now = self.clock()
        ctx = Context(to=recipient, verp=verp, hostname=self.hostname, now=now)
        try:
            decision = decide(report, ctx, self.classify)
        except Exception:
            self.counts["dropped"] += 1
            log.exception("%s: to <%s>: dropped, cannot read the report", queue_id, recipient)
            return None
        self._apply(decision, queue_id, recipient, now)
        return decision

    def _apply(self, decision: Decision, queue_id: str, recipient: str, now: float) -> None:
        for bounce in decision.bounces:
            self.counts["rb"] += 1
            log.info(
                "%s: remote bounce rcpt=<%s> orig=<%s> status=%s cat=%s job=%s",
                queue_id,
                bounce.recipient,
                bounce.sender,
                bounce.status,
                bounce.category,
                bounce.job_id,
            )
            self.publish(bounce)
        for complaint in decision.complaints:
            self.counts["f"] += 1
            log.info(
                "%s: complaint rcpt=<%s> domain=%s type=%s",
                queue_id,
                complaint.recipient,
                complaint.sender_domain,
                complaint.detail,
            )
            self.publish(complaint)
        if decision.unsubscribe:
            self._unsubscribe(decision.unsubscribe, queue_id, now)
        if decision.ignored:
            self.counts["ignored"] += 1
            log.info("%s: to <%s>: nothing to record (%s)", queue_id, recipient, decision.ignored)
        if decision.suppress and self.store is not None:
            for entry in decision.suppress:
                if entry.reason != "complaint" and not self.auto_add():
                    continue
                try:
                    source = "fbl" if entry.reason == "complaint" else "async-bounce"
                    self.store.add(entry.address, entry.scope or None, entry.reason, source)
                except (SuppressionError, sqlite3.Error) as exc:
                    log.error("%s: cannot suppress <%s>: %s", queue_id, entry.address, exc)

    def _unsubscribe(self, token: str, queue_id: str, now: float) -> None:
        secret = self.unsubscribe_secret()
        if secret is None or self.store is None:
            self.counts["ignored"] += 1
            log.warning("%s: unsubscribe by mail, but unsubscribe is not configured", queue_id)
            return
        try:
            what = apply_unsubscribe(
                token,
                secret=secret,
                store=self.store,
                publish=self.publish,
                now=now,
                source="mailto",
                max_age=self.unsubscribe_max_age(),
            )
        except (TokenError, SuppressionError) as exc:
            self.counts["ignored"] += 1
            log.info("%s: unsubscribe by mail refused: %s", queue_id, exc)
            return
        except sqlite3.Error as exc:
            log.error("%s: unsubscribe by mail: cannot write the list: %s", queue_id, exc)
            return
        self.counts["unsubscribed"] += 1
        log.info("%s: unsubscribed <%s> (scope %s)", queue_id, what.recipient, what.scope or "*")
