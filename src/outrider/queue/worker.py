"""One outbound connection's loop: take work, send it, report, until done.

Stateless apart from the connection: everything about the schedule goes through the
:class:`~outrider.queue.lease.Lease`, and everything about the wire through the
:class:`~outrider.delivery.transport.Transport`, so a new transport needs no change here.

A connection that can pipeline the next message behind the current one (SMTP with
PIPELINING: :meth:`SmtpConnection.wait_accepting`) gets it as soon as the current
message's end of data is out, when one is ready now: on a distant server that is one
round trip per message instead of two. Reports are still made in order, each as soon
as its message is settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from outrider.delivery.transport import Connection, DeliveryReport, Transport
from outrider.queue.lease import Lease
from outrider.queue.model import WorkItem
from outrider.spool.reader import Body

log = logging.getLogger("outrider.queue")

_InFlight = tuple[WorkItem, "asyncio.Future[DeliveryReport]"]


def _accepting(conn: Connection) -> Callable[[], Awaitable[bool]] | None:
    """The connection's ``wait_accepting`` if it can pipeline messages (optional)."""
    wait = getattr(conn, "wait_accepting", None)
    return wait if callable(wait) else None


async def _settle(lease: Lease, entry: _InFlight) -> DeliveryReport:
    """Await one in-flight delivery and report it."""
    item, fut = entry
    return await _report(lease, item, fut)


async def _deliver(lease: Lease, conn: Connection, item: WorkItem, body: Body) -> DeliveryReport:
    """Send one message in the worker's own task and report it: what :func:`_settle`
    does for a delivery in flight, without a task of its own (nothing races it)."""
    return await _report(lease, item, conn.deliver(item.message.envelope, item.recipients, body))


async def _report(
    lease: Lease, item: WorkItem, delivery: Awaitable[DeliveryReport]
) -> DeliveryReport:
    """Await ``delivery`` and report it to the lease. When the transport raised, the
    item is reported as a local error and the exception re-raised."""
    try:
        report = await delivery
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("delivery on %s failed", lease.queue.name)
        lease.local_error(item, exc)
        raise
    lease.report(item, report)
    return report


def _may_pipeline(
    lease: Lease, accepting: Callable[[], Awaitable[bool]] | None, stop: bool
) -> bool:
    """Whether the next message could be pipelined behind the one about to go out
    (checked again once it is out: the window or the ready items may change)."""
    return not stop and not lease.closing and accepting is not None and lease.has_ready()


async def _first_done(a: asyncio.Future[Any], b: asyncio.Future[Any]) -> None:
    """Wait until ``a`` or ``b`` is done: ``asyncio.wait(FIRST_COMPLETED)`` for two
    futures, without its sets and bookkeeping (it runs for each message the worker
    tries to pipeline)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake(_: asyncio.Future[Any]) -> None:
        if not done.done():
            done.set_result(None)

    a.add_done_callback(wake)
    b.add_done_callback(wake)
    try:
        await done
    finally:
        a.remove_done_callback(wake)
        b.remove_done_callback(wake)


async def _overlaps(
    task: asyncio.Future[DeliveryReport], accepting: Callable[[], Awaitable[bool]]
) -> bool:
    """Whether the next message may go out behind ``task``'s before it is settled:
    wait for whichever comes first, the connection accepting it or ``task`` ending."""
    waiter = asyncio.ensure_future(accepting())
    try:
        await _first_done(task, waiter)
    finally:
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    return (
        not task.done()
        and not waiter.cancelled()
        and waiter.exception() is None
        and waiter.result()
    )


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
    accepting = _accepting(conn)
    sent = 0
    inflight: list[_InFlight] = []  # oldest first; at most two (one pipelined behind)
    try:
        while item is not None:
            if not await lease.pace():
                lease.put_back(item)  # the next message is too far off to hold on for
                item = None
                break
            body = await lease.body(item)
            sent += 1
            stop = bool(lease.max_per_connection and sent >= lease.max_per_connection)
            if not inflight and not _may_pipeline(lease, accepting, stop):
                # Nothing in flight and nothing to pipeline behind it: sent and settled
                # in this task (a task per message costs more than the send itself).
                current, item = item, None
                report = await _deliver(lease, conn, current, body)
            else:
                task = asyncio.ensure_future(
                    conn.deliver(item.message.envelope, item.recipients, body)
                )
                inflight.append((item, task))
                item = None  # settled through inflight from here on
                if len(inflight) > 1:
                    report = await _settle(lease, inflight.pop(0))
                    stop = stop or report.failure is not None
                if (
                    not stop
                    and not lease.closing
                    and accepting is not None
                    and lease.has_ready()  # else nothing to pipeline: no waiter to set up
                    and await _overlaps(task, accepting)
                ):
                    item = lease.take_now()
                    if item is not None and not await conn.can_carry(item.domain):
                        lease.put_back(item)
                        item = None
                    if item is not None:
                        continue  # pipelined behind the message in flight
                report = await _settle(lease, inflight.pop(0))
            if stop or not conn.usable or lease.closing or report.failure is not None:
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
    except BaseException:
        for _, fut in inflight:  # cancelled (shutdown): the deliveries in flight too
            fut.cancel()
        inflight.clear()
        raise
    finally:
        try:
            while inflight:
                await _settle(lease, inflight.pop(0))
        finally:
            await conn.close()
