"""The intake: the one way in for every message, whatever its source.

``submit`` runs, in order: the message checks, the checks' recipient mapping
(``Postmaster``), header completion, the List-Unsubscribe fields
(:mod:`outrider.unsubscribe.step`, when ``[unsubscribe]`` is on), DKIM signing
(:mod:`outrider.dkim.step`, when ``[[dkim]]`` keys are configured), the VERP return path
(:mod:`outrider.feedback.step`, for a ``[bounce-domain]`` with ``verp = true``), the choice
of virtual MTA, the durable store (fsynced before it returns) and the hand-off to the sink
(the scheduler). The caller
answers its client from the result: only an :class:`Accepted` message may be
acknowledged, and only an accepted message ever reaches the sink. A stored message is
accepted even when the sink cannot take it (it is scheduled from the spool instead).
The MAIL and RCPT checks are exposed for sources that ask them one command at a time (SMTP).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from outrider.intake.content import Content
from outrider.intake.finish import finish_message
from outrider.intake.pipeline import IntakePipeline
from outrider.intake.sink import Sink, SinkUnavailableError
from outrider.intake.submission import MailEnvelope, Submission
from outrider.intake.verdict import Verdict, VerdictResult
from outrider.intake.vmta import VmtaTable, choose_vmta
from outrider.message.envelope import Envelope
from outrider.message.ids import new_queue_id
from outrider.smtp.replies import LOCAL_ERROR, Reply
from outrider.spool.base import DuplicateMessageError, SpoolError
from outrider.spool.spill import SpilledBody, SpillFile
from outrider.unsubscribe.step import take_request

if TYPE_CHECKING:
    from outrider.dkim.step import DkimSigner
    from outrider.feedback.step import VerpRewriter
    from outrider.unsubscribe.step import UnsubscribeStep

log = logging.getLogger("outrider.intake")


class MessageStore(Protocol):
    """The part of :class:`outrider.spool.base.Spool` the intake and its sources use."""

    async def store(self, envelope: Envelope, body: bytes | SpilledBody) -> None:
        """Durable on return; raises :class:`SpoolError` (with the reply to give). A
        spilled body's file is the store's from the call on."""
        ...

    def spill(self, head_len: int) -> SpillFile:
        """A spill file for content too big for memory (:mod:`outrider.intake.content`)."""
        ...


@dataclass(frozen=True, slots=True)
class Accepted:
    envelope: Envelope  # stored, and handed to the sink

    @property
    def queue_id(self) -> str:
        return self.envelope.queue_id


@dataclass(frozen=True, slots=True)
class Rejected:
    reply: Reply  # 4xx or 5xx; a 421 also closes an SMTP connection


@dataclass
class Intake:
    """One per process, shared by its listeners. ``pipeline``, ``hostname``, ``vmtas``
    and ``dkim`` follow the config (:func:`outrider.intake.build.reconfigure_intake`)."""

    pipeline: IntakePipeline
    spool: MessageStore
    sink: Sink
    hostname: str  # for the Received header and added Message-IDs
    vmtas: VmtaTable
    new_queue_id: Callable[[], str] = new_queue_id
    # a refused message's id goes back (the spool's reserved names: spool.names)
    release_queue_id: Callable[[str], None] = lambda _queue_id: None
    clock: Callable[[], float] = time.time
    dkim: DkimSigner | None = None  # None: no [[dkim]] configured, nothing signed
    # None: no [unsubscribe] url or mailto; X-Outrider-Unsubscribe is still removed
    unsubscribe: UnsubscribeStep | None = None
    verp: VerpRewriter | None = None  # None: no [bounce-domain] with verp = true

    def check_mail(self, submission: Submission, sender: str) -> VerdictResult:
        return self.pipeline.at_mail(submission, sender)

    def check_rcpt(self, submission: Submission, sender: str, recipient: str) -> VerdictResult:
        return self.pipeline.at_rcpt(submission, sender, recipient)

    def spill(self, head_len: int) -> SpillFile:
        """A spill file in the spool, for a source collecting content too big for memory
        (:class:`~outrider.intake.content.ContentBuffer`)."""
        return self.spool.spill(head_len)

    async def submit(
        self,
        submission: Submission,
        mail: MailEnvelope,
        content: Content,
        *,
        queue_id: str | None = None,
    ) -> Accepted | Rejected:
        """Check, complete, place, store and hand over one message.

        ``content`` is the message in memory, or spilled to the spool while it was
        received (:mod:`outrider.intake.content`): the message checks then see its
        header section only, and its spill file is stored or removed by the time this
        returns, whatever the outcome.

        A caller may give the queue id (a DSN's is derived from its original's, so a
        retry cannot store a second one): if that id is stored already,
        :class:`~outrider.spool.base.DuplicateMessageError` is raised and nothing
        reaches the sink."""
        taken: str | None = None  # an id this call took, to give back if nothing is stored
        refusal: Reply | None = LOCAL_ERROR
        try:
            head = content if isinstance(content, bytes) else content.head
            verdict = self.pipeline.at_message(submission, mail, head)
            if not isinstance(verdict, Verdict):
                verdict = await verdict
            if verdict.reply is not None:
                return Rejected(verdict.reply)
            try:
                mail = self.pipeline.map_recipients(submission, mail)
            except Exception:
                log.exception("intake: cannot map the recipients")
                return Rejected(LOCAL_ERROR)
            if not queue_id:
                queue_id = self.new_queue_id()
                taken = queue_id
            now = self.clock()
            envelope, data = finish_message(
                submission, mail, content, queue_id=queue_id, hostname=self.hostname, now=now
            )
            data = self._list_unsubscribe(submission, envelope, data, now)
            if self.dkim is not None:
                try:
                    data = await self.dkim.apply(data, now)
                except Exception:
                    log.exception("%s: DKIM signing failed", queue_id)
                    return Rejected(LOCAL_ERROR)
                envelope.size = len(data) if isinstance(data, bytes) else data.size
            if self.verp is not None:
                self.verp.rewrite(envelope)  # the envelope only: signatures are unaffected
            envelope.vmta = choose_vmta(
                self.vmtas,
                sender=envelope.sender,
                requested=envelope.vmta_request or None,
                listener_default=envelope.listener_vmta or None,
                queue_id=queue_id,
            )
            refusal = await self._store(envelope, data)
        finally:
            if not isinstance(content, bytes):
                content.discard()  # refused or failed; a no-op once the spool has it
            if refusal is not None and taken is not None:
                self.release_queue_id(taken)
        if refusal is not None:
            return Rejected(refusal)
        log.debug(
            "queued %s from=<%s> rcpts=%d size=%d vmta=%s",
            queue_id,
            envelope.sender,
            len(envelope.recipients),
            envelope.size,
            envelope.vmta,
        )
        return Accepted(envelope)

    def _list_unsubscribe(
        self, submission: Submission, envelope: Envelope, data: Content, now: float
    ) -> Content:
        """The unsubscribe step (:mod:`outrider.unsubscribe.step`), before signing so the
        signature covers its fields."""
        changed, asked = take_request(submission, data)
        if self.unsubscribe is not None:
            changed = self.unsubscribe.apply(changed, envelope, asked, now)
        if changed is not data:
            envelope.size = len(changed) if isinstance(changed, bytes) else changed.size
        return changed

    async def _store(self, envelope: Envelope, data: Content) -> Reply | None:
        """Store, then hand to the sink; the reply to refuse with if either fails."""
        queue_id = envelope.queue_id
        try:
            await self.spool.store(envelope, data)
        except DuplicateMessageError:
            raise
        except SpoolError as exc:
            log.error("spool: cannot store %s: %s", queue_id, exc)
            return exc.reply
        except Exception:
            log.exception("cannot store %s", queue_id)
            return LOCAL_ERROR
        # Stored durably: from here on the answer is 250 whatever happens to the
        # hand-over, or the client would retry and the message go out twice. A message
        # the sink did not take is scheduled from the spool (the delivery process
        # adopts what its receivers stored but could not hand over; a restart recovers
        # the rest).
        try:
            self.sink.accept(envelope, data if isinstance(data, bytes) else None)
        except SinkUnavailableError as exc:
            log.warning("%s stored; not handed over (%s): scheduled from the spool", queue_id, exc)
        except Exception:
            log.exception("%s stored; cannot hand over: scheduled from the spool", queue_id)
        return None
