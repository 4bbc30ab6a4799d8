"""The accounting log as an event subscriber: one CSV row per outcome or queue change."""

from __future__ import annotations

from collections.abc import Sequence

from outrider.accounting.records import AccountingRecord, RecordType, clean, format_time, to_row
from outrider.accounting.writer import AccountingLog
from outrider.events.types import Bounced, Deferred, Delivered, Event, QueueEvent, RecipientEvent

_TYPES: dict[type, RecordType] = {
    Delivered: RecordType.DELIVERED,
    Bounced: RecordType.BOUNCED,
    Deferred: RecordType.TRANSIENT,
}


def row_of(event: Event) -> tuple[str, ...] | None:
    """The CSV row PowerMTA would log for ``event``; None for events it does not log.

    Recipient events become rows directly (no intermediate record object): this runs
    for every recipient on the delivery path."""
    if isinstance(event, RecipientEvent):
        rtype = _TYPES[type(event)]
        msg = event.message
        return (
            rtype.value,
            format_time(event.at),
            format_time(msg.received_at),
            clean(msg.sender),
            clean(event.recipient),
            clean(event.orcpt),
            rtype.dsn_action,
            event.status,
            clean(event.diagnostic),
            clean(event.remote_mta),
            event.source_ip,
            event.destination_ip,
            event.queue,
            event.vmta,
            clean(msg.job_id),
            clean(msg.envid),
            clean(msg.msg_id),
            str(msg.size),
            "",
        )
    if isinstance(event, QueueEvent):
        return to_row(
            AccountingRecord(
                type=RecordType.QUEUE,
                time_logged=event.at,
                time_queued=event.at,
                orig="",
                rcpt="",
                orcpt="",
                dsn_action=event.action,
                dsn_status="",
                dsn_diag=event.reply,
                dsn_mta=event.host,
                dlv_source_ip="",
                dlv_destination_ip="",
                queue=event.queue,
                vmta=event.vmta,
                job_id="",
                env_id="",
                msg_id="",
                size=0,
                rule=event.rule,
            )
        )
    return None


class AccountingSubscriber:
    def __init__(self, log: AccountingLog) -> None:
        self.log = log

    def handle(self, events: Sequence[Event]) -> None:
        """Write the batch's rows and hand them to the OS at once (a write, no fsync).

        The bus runs this before the finisher even queues the spool record of these
        outcomes, so a kill -9 never loses the row of an outcome the spool kept; a row
        left in our buffer until the once-a-second flush would be lost with the process
        while the spool, which has the delivery, never sends it again."""
        rows = [r for r in map(row_of, events) if r is not None]
        if rows:
            self.log.write_rows(rows)
            self.log.flush()
