"""The DSN notifier: an event subscriber that turns owed notices into DSN messages.

On :class:`~outrider.events.types.NoticeDue` it builds the notice from the original's
persisted state and submits it through the intake like any message (source DSN; the
intake completes, places and stores it) under the derived queue id
``<original>-<kind>``, so a retry after a crash finds it rather than storing a second
one. The intake's sink holds it until the scheduler has cleared the notice durably;
only then is the DSN scheduled. Any failure leaves the notice owed, and the scheduler
announces it again later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from outrider.config.model import DomainPolicy
from outrider.dsn.builder import MAX_RETURNED_SIZE, RETURNED_HEAD, FailedRecipient, build_dsn
from outrider.dsn.notices import DELAYED, FAILED, RELAYED, notice_id, notice_recipients
from outrider.events.types import Event, NoticeDue
from outrider.intake.core import Intake, Rejected
from outrider.intake.sink import HeldSink
from outrider.intake.submission import MailEnvelope, MailRecipient, Submission
from outrider.message.envelope import Envelope, Recipient, Source
from outrider.policy.outcome import expired_status, status_from_text
from outrider.spool.base import DuplicateMessageError, Spool
from outrider.spool.reader import body_head

log = logging.getLogger("outrider.dsn")

ACTIONS = {FAILED: "failed", DELAYED: "delayed", RELAYED: "relayed"}
DEFAULT_STATUS = {FAILED: "5.0.0", DELAYED: "4.0.0", RELAYED: "2.0.0"}


def status_for(kind: str, status: str) -> str:
    """A failure notice whose stored reply is temporary (``452 4.2.2 mailbox full``) is
    about a recipient that expired in the queue: it says ``4.4.7`` (delivery time
    expired, RFC 3463), as the ``b`` row and the Bounced event do."""
    return expired_status(status) if kind == FAILED else status


class NoticeDesk(Protocol):
    """What the notifier needs from the scheduler."""

    def envelope(self, queue_id: str) -> Envelope | None: ...

    async def notice_stored(self, queue_id: str, kind: str) -> None: ...

    def notice_failed(self, queue_id: str, kind: str) -> None: ...

    def submit(self, envelope: Envelope, body: bytes | None) -> None: ...


def dsn_envelope(original: Envelope, dsn_id: str, data: bytes, now: float) -> Envelope:
    """The envelope of a DSN already in the spool (its stored copy is the same but for
    the size and the virtual MTA, which the scheduler fills in)."""
    return Envelope(
        queue_id=dsn_id,
        sender="",
        recipients=[Recipient(original.sender)],
        received_at=now,
        size=len(data),
        # The notice needs SMTPUTF8 only when its own recipient does; UTF-8 in the
        # report parts is 8-bit body content (RFC 6533 message/global-*).
        smtputf8=not original.sender.isascii(),
        body_8bit=not data.isascii(),
        source=Source.DSN,
    )


class DsnNotifier:
    def __init__(
        self,
        spool: Spool,
        intake: Intake,
        held: HeldSink,
        desk: NoticeDesk,
        *,
        policy_for: Callable[[str], DomainPolicy],
        clock: Callable[[], float],
    ) -> None:
        self.spool = spool
        self.intake = intake  # its sink is ``held``
        self.held = held
        self.desk = desk
        self.policy_for = policy_for
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, events: Sequence[Event]) -> None:
        for event in events:
            if isinstance(event, NoticeDue):
                task = asyncio.get_running_loop().create_task(
                    self._send(event.queue_id, event.kind), name=f"dsn-{event.queue_id}"
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    @property
    def busy(self) -> bool:
        """Notices under way (being built or stored)."""
        return not all(task.done() for task in self._tasks)

    async def drain(self, timeout: float) -> bool:
        """Let notices under way finish (at shutdown); whether they all did."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        return not self.busy

    async def _send(self, queue_id: str, kind: str) -> None:
        env = self.desk.envelope(queue_id)
        if env is None or kind not in env.notices:
            return
        recipients = notice_recipients(env, kind)
        if not recipients:  # nobody left to report on
            await self._clear(queue_id, kind)
            return
        dsn_id = notice_id(queue_id, kind)
        try:
            data = await self._build(env, kind, recipients, dsn_id)
            result = await self.intake.submit(
                Submission(
                    source=Source.DSN,
                    protocol="local",
                    # SMTPUTF8 only when the notice's own recipient needs it; UTF-8 in
                    # the report parts is 8-bit body content (RFC 6533).
                    smtputf8=not env.sender.isascii(),
                ),
                MailEnvelope("", (MailRecipient(env.sender),)),
                data,
                queue_id=dsn_id,
            )
        except DuplicateMessageError:
            # Stored by an earlier try whose clearing failed: schedule that one.
            stored = dsn_envelope(env, dsn_id, b"", self.clock())
            if await self._clear(queue_id, kind):
                self.desk.submit(stored, None)
            return
        except Exception:
            log.exception("%s: cannot build the %s DSN", queue_id, ACTIONS[kind])
            self.desk.notice_failed(queue_id, kind)
            return
        if isinstance(result, Rejected):
            log.error("%s: cannot store the %s DSN: %s", queue_id, ACTIONS[kind], result.reply)
            self.desk.notice_failed(queue_id, kind)
            return
        held = self.held.release(dsn_id)
        if not await self._clear(queue_id, kind) or held is None:
            return
        log.info("%s: %s DSN %s to <%s>", queue_id, ACTIONS[kind], dsn_id, env.sender)
        self.desk.submit(*held)

    async def _clear(self, queue_id: str, kind: str) -> bool:
        try:
            await self.desk.notice_stored(queue_id, kind)
        except Exception as exc:
            log.error("%s: cannot record the %s DSN: %s", queue_id, ACTIONS[kind], exc)
            self.desk.notice_failed(queue_id, kind)
            return False
        return True

    async def _build(
        self, env: Envelope, kind: str, recipients: list[Recipient], dsn_id: str
    ) -> bytes:
        try:
            if env.size > MAX_RETURNED_SIZE:  # returned as headers only: read no more
                original = await body_head(await self.spool.open_body(env.queue_id), RETURNED_HEAD)
            else:
                original = await self.spool.load_body(env.queue_id)
        except Exception:  # the notice still goes out, with what is known
            log.exception("cannot load %s for its DSN; returning headers only", env.queue_id)
            original = b""
        until = None
        if kind == DELAYED:
            until = env.received_at + self.policy_for(recipients[0].domain).bounce_after
        return build_dsn(
            env,
            [
                FailedRecipient(
                    recipient=r,
                    status=status_for(kind, status_from_text(r.last_reply, DEFAULT_STATUS[kind])),
                    diagnostic=r.last_reply,
                    remote_mta=r.last_mta,
                    will_retry_until=until,
                )
                for r in recipients
            ],
            original,
            reporting_mta=self.intake.hostname,
            now=self.clock(),
            action=ACTIONS[kind],
            queue_id_of_dsn=dsn_id,
            original_size=env.size if original else None,
        )
