"""The accounting log as an event subscriber: one CSV row per outcome or queue change."""

from __future__ import annotations

from collections.abc import Sequence

from outrider.accounting.records import AccountingRecord, RecordType
from outrider.accounting.writer import AccountingLog
from outrider.events.types import Bounced, Deferred, Delivered, Event, QueueEvent, RecipientEvent

_TYPES: dict[type, RecordType] = {
    Delivered: RecordType.DELIVERED,
    Bounced: RecordType.BOUNCED,
    Deferred: RecordType.TRANSIENT,
}


def record_of(event: Event) -> AccountingRecord | None:
    """The row PowerMTA would log for ``event``; None for events it does not log."""
    if isinstance(event, RecipientEvent):
        rtype = _TYPES[type(event)]
        msg = event.message
        return AccountingRecord(
            type=rtype,
            time_logged=event.at,
            time_queued=msg.received_at,
            orig=msg.sender,
            rcpt=event.recipient,
            orcpt=event.orcpt,
            dsn_action=rtype.dsn_action,
            dsn_status=event.status,
            dsn_diag=event.diagnostic,
            dsn_mta=event.remote_mta,
            dlv_source_ip=event.source_ip,
            dlv_destination_ip=event.destination_ip,
            queue=event.queue,
            vmta=event.vmta,
            job_id=msg.job_id,
            env_id=msg.envid,
            msg_id=msg.msg_id,
            size=msg.size,
        )
    if isinstance(event, QueueEvent):
        return AccountingRecord(
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
    return None


class AccountingSubscriber:
    def __init__(self, log: AccountingLog) -> None:
        self.log = log

    def handle(self, events: Sequence[Event]) -> None:
        records = [r for r in map(record_of, events) if r is not None]
        if records:
            self.log.write_many(records)
