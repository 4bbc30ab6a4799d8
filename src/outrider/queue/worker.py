"""One outbound connection's loop: take work, send it, report, until done.

Stateless apart from the connection: everything about the schedule goes through the
:class:`~outrider.queue.lease.Lease`, and everything about the wire through the
:class:`~outrider.delivery.transport.Transport`, so a new transport needs no change here.
"""

from __future__ import annotations

import logging

from outrider.delivery.transport import Transport
from outrider.queue.lease import Lease

log = logging.getLogger("outrider.queue")


async def run_worker(lease: Lease, transport: Transport) -> None:
    item = lease.take()
    if item is None:
        return
    try:
        opened = await transport.open(lease.route(item))
    except Exception as exc:  # a transport bug must not strand the item unscheduled
        log.exception("opening a connection for %s failed", lease.queue.name)
        lease.local_error(item, exc)
        return
    conn = opened.connection
    if conn is None:
        assert opened.failure is not None
        lease.fail(item, opened.failure)
        return
    lease.connected()
    sent = 0
    try:
        while item is not None:
            if not await lease.pace():
                lease.put_back(item)  # the next message is too far off to hold on for
                item = None
                break
            body = await lease.body(item)
            report = await conn.deliver(item.message.envelope, item.recipients, body)
            current, item = item, None  # settled from here on
            lease.report(current, report)
            sent += 1
            if not conn.usable or lease.closing or report.failure is not None:
                break
            if lease.max_per_connection and sent >= lease.max_per_connection:
                break
            item = await lease.next()
            if item is not None and not await conn.can_carry(item.domain):
                lease.put_back(item)  # a fresh connection starts with it
                item = None
    except Exception as exc:
        if item is not None:
            log.exception("delivery on %s failed", lease.queue.name)
            lease.local_error(item, exc)
        raise
    finally:
        await conn.close()
