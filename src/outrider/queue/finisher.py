"""Making settled states durable, owing notices, and letting messages go.

The order is what makes it crash-safe:

1. New recipient states, the delay-warned mark and the notices owed ("F" failed,
   "D" delayed, "S" relayed) go to the spool in one record.
2. Only then is each owed notice announced (a :class:`NoticeDue` event). The
   notifier stores the DSN under the derived id ``<queue-id>-<kind>``, and the
   notice is cleared by another record *before* the DSN is scheduled, so a DSN is
   never delivered while its original still says it is owed.
3. A message with every recipient final and no notice owed is removed; the removal
   is its final record (a crash before it replays the last attempt's states).

A failure at any step (disk full) keeps the message in the schedule and retries the
step later; recovery after a crash finds an owed notice whose DSN is already stored
by its derived id and clears it instead of building a second one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from outrider.events.types import MessageDone, NoticeDue
from outrider.message.envelope import Recipient
from outrider.queue.context import Context
from outrider.queue.model import QueuedMessage
from outrider.spool.base import Spool

log = logging.getLogger("outrider.queue")
RETRY_AFTER_ERROR = 30.0  # seconds before a failed spool write or notice is tried again


class Finisher:
    def __init__(
        self,
        ctx: Context,
        spool: Spool,
        dispatch: Callable[[QueuedMessage], None],
        forget: Callable[[QueuedMessage], None],
    ) -> None:
        self.ctx = ctx
        self.spool = spool
        self.dispatch = dispatch  # reschedule a message with pending recipients
        self.forget = forget  # drop a removed message from the schedule

    def persist(self, msg: QueuedMessage, changed: Sequence[Recipient], last: bool) -> None:
        self.ctx.spawn(self._persist(msg, changed, last), f"persist-{msg.envelope.queue_id}")

    async def _persist(self, msg: QueuedMessage, changed: Sequence[Recipient], last: bool) -> None:
        """Make the new states durable; the item that settled last reschedules."""
        env = msg.envelope
        try:
            if last and env.is_done and not env.notices:
                await self._remove(msg)
                return
            await self.spool.record(env, changed)
        except Exception as exc:
            self._retry_later(msg, changed, last, exc)
            return
        self.announce(msg)
        if last and not env.is_done and not self.ctx.stopping:
            self.dispatch(msg)

    async def _remove(self, msg: QueuedMessage) -> None:
        if msg.removing:
            return
        msg.removing = True
        try:
            await self.spool.remove(msg.envelope.queue_id)
        except BaseException:
            msg.removing = False
            raise
        self.forget(msg)
        self.ctx.bus.publish(MessageDone(self.ctx.clock(), msg.envelope.queue_id))

    def _retry_later(
        self, msg: QueuedMessage, changed: Sequence[Recipient], last: bool, exc: Exception
    ) -> None:
        log.error(
            "%s: cannot record delivery state (%s); retrying in %.0fs",
            msg.envelope.queue_id,
            exc,
            RETRY_AFTER_ERROR,
        )
        if not self.ctx.stopping:
            # By position, not by object: the message may be packed and unpacked again
            # before the retry (an operator action), and then has new Recipient objects.
            ids = {id(r) for r in changed}
            where = [i for i, r in enumerate(msg.envelope.recipients) if id(r) in ids]
            self.ctx.loop.call_later(RETRY_AFTER_ERROR, self._persist_again, msg, where, last)

    def _persist_again(self, msg: QueuedMessage, where: list[int], last: bool) -> None:
        recipients = msg.envelope.recipients
        self.persist(msg, [recipients[i] for i in where], last)

    def announce(self, msg: QueuedMessage) -> None:
        """Publish a NoticeDue for each owed notice not yet handed to the notifier."""
        env = msg.envelope
        for kind in env.notices:
            if kind not in msg.announced:
                msg.announced += kind
                self.ctx.bus.publish(NoticeDue(self.ctx.clock(), env.queue_id, kind))

    async def clear_notice(self, msg: QueuedMessage, kind: str) -> None:
        """The DSN of ``kind`` is stored: clear the notice durably, removing the message
        if that was all it waited for. Raises if the spool write fails (the notice then
        stays owed); the caller schedules the DSN only after this returned."""
        env = msg.envelope
        if kind not in env.notices:
            return
        env.notices = env.notices.replace(kind, "")
        msg.announced = msg.announced.replace(kind, "")
        try:
            if env.is_done and not env.notices and msg.inflight == 0:
                await self._remove(msg)
            else:
                await self.spool.record(env, [])
        except BaseException:
            env.notices += kind
            raise

    def notice_failed(self, msg: QueuedMessage, kind: str) -> None:
        """Building or storing the DSN failed: announce it again later."""
        msg.announced = msg.announced.replace(kind, "")
        if not self.ctx.stopping:
            self.ctx.loop.call_later(RETRY_AFTER_ERROR, self.announce, msg)
