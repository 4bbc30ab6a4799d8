"""Delivering to a mailing list: the post is stored again as a new message to its members.

The list's recipient in the post counts as delivered once the copy is stored (fsynced),
so a crash in between sends the copy again under the same derived queue id, which the
spool refuses as a duplicate: the members get it once. Each member is then delivered,
retried, bounced and accounted on its own, from the list's bounce address.

Posts are read whole into memory to be copied: a list post is mail written by people
(bounded by the listener's ``max-message-size``), never a bulk campaign.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from outrider.delivery.transport import DeliveryReport, RecipientReply
from outrider.intake.core import Intake, Rejected
from outrider.intake.submission import MailEnvelope, MailRecipient, Submission
from outrider.local.directory import Directory
from outrider.local.lists import bounce_address, has_looped, list_copy, members_of
from outrider.message.envelope import Envelope, Recipient, Source
from outrider.smtp.replies import Reply
from outrider.spool.base import DuplicateMessageError, SpoolError
from outrider.spool.reader import Body, StoredBody

log = logging.getLogger("outrider.delivery")

NO_SUCH_LIST = Reply(550, "5.1.1", "No such list (it was removed)")
LIST_LOOP = Reply(554, "5.4.6", "List loop: this post already went through the list")
NO_MEMBERS = Reply(250, "2.0.0", "The list has no members")
CANNOT_STORE = Reply(451, "4.3.0", "Cannot store the list's copy; will try again")


def copy_id(queue_id: str, envelope: Envelope, recipient: Recipient) -> str:
    """The list copy's queue id: derived from the post and the list's place in it."""
    index = next(i for i, r in enumerate(envelope.recipients) if r is recipient)
    return f"{queue_id}-L{index}"


async def read_body(body: Body) -> bytes:
    if isinstance(body, StoredBody):
        return b"".join([chunk async for chunk in body.chunks()])
    return body


class ListExpander:
    """Stores one copy per list recipient through ``intake`` (no checks but alias
    expansion: the members are the list's, not the poster's)."""

    def __init__(self, intake: Intake, directory: Callable[[], Directory]) -> None:
        self.intake = intake
        self.directory = directory

    async def post(
        self, envelope: Envelope, recipients: list[Recipient], body: Body
    ) -> DeliveryReport:
        report = DeliveryReport(remote_host="list")
        content: bytes | None = None
        for rcpt in recipients:
            try:
                if content is None:
                    content = await read_body(body)
                reply = await self._post_one(envelope, rcpt, content)
            except SpoolError as exc:
                log.error(
                    "%s: cannot read the post for %s: %s", envelope.queue_id, rcpt.address, exc
                )
                reply = CANNOT_STORE
            report.replies.append(RecipientReply(rcpt, reply, "data-end"))
        return report

    async def _post_one(self, envelope: Envelope, rcpt: Recipient, content: bytes) -> Reply:
        directory = self.directory()
        mlist = directory.lists.get(rcpt.address)
        if mlist is None:
            return NO_SUCH_LIST
        if has_looped(content, mlist):
            return LIST_LOOP
        members = members_of(directory, mlist.address)
        if not members:
            return NO_MEMBERS
        queue_id = copy_id(envelope.queue_id, envelope, rcpt)
        try:
            result = await self.intake.submit(
                Submission(source=Source.LIST, protocol="local", smtputf8=envelope.smtputf8),
                MailEnvelope(bounce_address(mlist), tuple(MailRecipient(m) for m in members)),
                list_copy(content, mlist),
                queue_id=queue_id,
            )
        except DuplicateMessageError:
            return Reply(250, "2.0.0", f"List copy {queue_id} was stored already")
        if isinstance(result, Rejected):
            log.error(
                "%s: list %s: copy refused: %s", envelope.queue_id, mlist.address, result.reply
            )
            return result.reply if result.reply.code >= 500 else CANNOT_STORE
        log.info(
            "%s: list %s expanded to %d member(s) as %s",
            envelope.queue_id,
            mlist.address,
            len(members),
            queue_id,
        )
        return Reply(250, "2.0.0", f"Expanded to {len(members)} member(s) as {queue_id}")
