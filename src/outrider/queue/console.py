"""The console's calls on the schedule: look at queued mail, retry, delete, hold.

The control socket (and later the HTTP API) serves these; each returns plain data.
Look-ups walk every pending recipient (the inventory), so deferred mail waiting for
its retry time is seen in the queue it waits for. Actions change recipients only
where no connection holds them: one being delivered right now is left alone and
counted as ``busy``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from outrider.message.envelope import Envelope, RcptStatus, Recipient
from outrider.queue.inventory import (
    Selector,
    locate_items,
    pending,
    queue_of,
    recipient_state,
    whole_message_held,
)
from outrider.queue.model import DeliveryQueue, QueuedMessage
from outrider.queue.scheduler import Scheduler
from outrider.queue.summary import LiveQueue, QueuedRcpt, iso
from outrider.spool.base import UnknownMessageError
from outrider.spool.reader import body_head

log = logging.getLogger("outrider.queue")

EVERYTHING = Selector()
YIELD_EVERY = 5000  # messages looked at between two turns of the event loop
HEADER_LIMIT = 64 * 1024  # octets read for `show message`
BODY_LIMIT = 4 * 1024 * 1024  # octets returned by `show message --body`


@dataclass(frozen=True, slots=True)
class ActionResult:
    """How many queued recipients a command matched, changed, and left alone because a
    connection was delivering them at that moment."""

    matched: int
    changed: int
    busy: int = 0


class Console:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.ctx = scheduler.ctx

    # -- look-ups ----------------------------------------------------------------------------
    async def rows(self, selector: Selector = EVERYTHING) -> list[QueuedRcpt]:
        """Every matching pending recipient. A snapshot taken in slices, letting the event
        loop run between them: a look-up over a big queue does not stall deliveries."""
        holds = self.scheduler.holds
        messages = list(self.scheduler.messages.values())
        rows: list[QueuedRcpt] = []
        for start in range(0, len(messages), YIELD_EVERY):
            if start:
                await asyncio.sleep(0)
            now = self.ctx.clock()
            for msg in messages[start : start + YIELD_EVERY]:
                if msg.removing:
                    continue
                env = msg.view()  # read only: a packed message stays packed
                for rcpt in env.recipients:
                    if rcpt.status is not RcptStatus.PENDING:
                        continue
                    domain = rcpt.domain
                    queue = queue_of(msg, env, rcpt, domain)
                    if not selector.matches(env, rcpt, queue):
                        continue
                    rows.append(
                        QueuedRcpt(
                            queue_id=env.queue_id,
                            sender=env.sender,
                            rcpt=rcpt.address,
                            queue=queue,
                            domain=domain,
                            vmta=queue.rpartition("/")[2],
                            job=env.job_id,
                            attempts=rcpt.attempts,
                            next_attempt=rcpt.next_attempt,
                            last_error=rcpt.last_reply,
                            size=env.size,
                            received_at=env.received_at,
                            state=recipient_state(holds, env, rcpt, queue, now),
                        )
                    )
        return rows

    def live(self) -> list[LiveQueue]:
        return [self._live(q) for q in self.scheduler.queues.values()]

    def _live(self, queue: DeliveryQueue) -> LiveQueue:
        now = self.ctx.clock()
        paused_by = self.scheduler.holds.paused_by(queue)
        if paused_by and self.scheduler.holds.queue_paused(queue):
            mode = "paused"
            reason = "paused by the operator" + (
                "" if paused_by == queue.name else f" (pause on {paused_by})"
            )
        elif queue.backoff.in_backoff:
            mode, reason = "backoff", f"backoff since {iso(queue.backoff.since)}"
        else:
            mode, reason = "normal", ""
        if queue.dead.is_dead(now):
            reason = ", ".join(filter(None, [reason, "destination not responding"]))
        return LiveQueue(
            queue.name, queue.domain, queue.vmta, mode, reason, queue.active, queue.last_error
        )

    async def message(self, queue_id: str, *, body: bool) -> dict[str, Any] | None:
        """``show message``: envelope, recipients, and the headers (or whole message)."""
        msg = self.scheduler.messages.get(queue_id)
        if msg is None:
            return None
        env = msg.view()
        now = self.ctx.clock()
        holds = self.scheduler.holds
        limit = BODY_LIMIT if body else HEADER_LIMIT
        if msg.body is not None:
            data = msg.body[:limit]
        else:
            try:
                data = await body_head(await self.scheduler.spool.open_body(queue_id), limit)
            except (UnknownMessageError, FileNotFoundError):
                return None  # removed just now (deleted or delivered): no longer queued
        text = data.decode("utf-8", errors="replace")
        truncated = env.size > len(data)
        if not body:
            end = text.find("\r\n\r\n")
            text, truncated = (text[: end + 2], False) if end >= 0 else (text, truncated)
        return {
            **_envelope(env),
            "held": env.queue_id in self.ctx.control.held_messages,
            "recipients": [
                _recipient(rcpt, recipient_state(holds, env, rcpt, queue, now))
                for rcpt, queue in _queues(msg, env)
            ],
            "body" if body else "headers": text,
            "truncated": truncated,
        }

    # -- actions -----------------------------------------------------------------------------
    def retry(self, selector: Selector) -> ActionResult:
        """Make matching deferred recipients due now, whatever their retry time."""
        now = self.ctx.clock()
        matched = changed = 0
        touched: dict[int, QueuedMessage] = {}
        for msg, rcpt, _ in pending(self.scheduler.messages.values(), selector):
            matched += 1
            if rcpt.next_attempt > now:
                rcpt.next_attempt = now
                changed += 1
                touched[id(msg)] = msg
        self.scheduler.retry_now(touched.values())
        if changed:
            log.info("operator retry: %d recipient(s) due now", changed)
        return ActionResult(matched, changed)

    def delete(self, selector: Selector, *, bounce: bool) -> ActionResult:
        """Remove matching recipients: final, with an accounting record each, and a
        failure notice to the sender only with ``bounce``."""
        scheduler = self.scheduler
        now = self.ctx.clock()
        parked = scheduler.holds.parked()
        located = locate_items([*(q.ready for q in scheduler.queues.values()), *parked])
        whole = whole_message_held(parked)
        matched = busy = 0
        chosen: dict[int, tuple[QueuedMessage, dict[str, list[Recipient]]]] = {}
        for msg, rcpt, queue in pending(scheduler.messages.values(), selector):
            matched += 1
            free = id(rcpt) in located or id(msg) in whole or rcpt.next_attempt > now
            if not free:
                busy += 1
                continue
            entry = chosen.setdefault(id(msg), (msg, {}))
            entry[1].setdefault(queue, []).append(rcpt)
        deleted = 0
        for msg, removals in chosen.values():
            emptied = False
            for rcpts in removals.values():
                for rcpt in rcpts:
                    place = located.get(id(rcpt))
                    if place is None:
                        continue
                    container, item = place
                    item.recipients = [r for r in item.recipients if r is not rcpt]
                    if not item.recipients:
                        container.remove(item)
                        msg.inflight -= 1
                        emptied = True
                deleted += len(rcpts)
            scheduler.remove(msg, removals, emptied=emptied, bounce=bounce)
        if deleted:
            log.info("operator delete: %d recipient(s) removed (bounce=%s)", deleted, bounce)
        return ActionResult(matched, deleted, busy)

    def hold(self, selector: Selector) -> ActionResult:
        """Hold whole messages (Postfix's hold queue): nothing of theirs is tried until
        released. Held ids persist in the control state."""
        ids = self._message_ids(selector)
        control = self.ctx.control
        new = ids - control.held_messages
        control.held_messages |= new
        if new:
            self.ctx.save_control()
            log.info("held %d message(s)", len(new))
        return ActionResult(len(ids), len(new))

    def release(self, selector: Selector) -> ActionResult:
        ids = self._message_ids(selector)
        control = self.ctx.control
        released = ids & control.held_messages
        control.held_messages -= released
        if released:
            self.ctx.save_control()
            log.info("released %d message(s)", len(released))
        for queue_id in released:
            for item in self.scheduler.holds.release_message(queue_id):
                self.scheduler.reroute(item)
        return ActionResult(len(ids), len(released))

    def _message_ids(self, selector: Selector) -> set[str]:
        return {
            msg.envelope.queue_id
            for msg, _, _ in pending(self.scheduler.messages.values(), selector)
        }


def _queues(msg: QueuedMessage, env: Envelope) -> list[tuple[Recipient, str]]:
    return [(rcpt, queue_of(msg, env, rcpt)) for rcpt in env.recipients]


def _envelope(env: Envelope) -> dict[str, Any]:
    return {
        "id": env.queue_id,
        "sender": env.sender,
        "size": env.size,
        "received": iso(env.received_at),
        "job": env.job_id,
        "vmta": env.vmta,
        "message_id": env.msg_id,
        "client_address": env.client_address,
        "helo": env.helo,
        "auth_user": env.auth_user,
        "source": env.source.value,
        "envid": env.envid,
    }


def _recipient(rcpt: Recipient, state: str) -> dict[str, Any]:
    pending_state = not rcpt.is_final
    return {
        "rcpt": rcpt.address,
        "state": state if pending_state else rcpt.status.value,
        "attempts": rcpt.attempts,
        "next_attempt": iso(rcpt.next_attempt) if pending_state and state == "deferred" else None,
        "last_error": rcpt.last_reply,
    }
