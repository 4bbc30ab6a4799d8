"""Recipients at this server's own domains: known addresses only, lists' posting rules,
and aliases expanded before the message is stored.

An unknown address of a local domain is refused at RCPT time (550 5.1.1): the client
learns it at once and no bounce is ever sent to a forged sender. An alias is replaced by
its final targets (mailboxes, remote addresses, lists), each keeping the client's NOTIFY
and an ORCPT naming the address the client gave (RFC 3461 section 4.2), so DSNs say
which address the sender used. A loop is refused at RCPT time with 5.4.6.
"""

from __future__ import annotations

import logging

from outrider.intake.pipeline import Check
from outrider.intake.submission import MailRecipient, Submission
from outrider.intake.verdict import CONTINUE, Verdict
from outrider.local.build import LiveDirectory
from outrider.local.directory import Directory, Kind, MailingList, split_address
from outrider.smtp.replies import Reply

log = logging.getLogger("outrider.intake")

UNKNOWN_USER = Reply(550, "5.1.1", "No such user here")
NOT_A_POSTER = Reply(550, "5.7.1", "You are not allowed to post to this list")
ALIAS_LOOP = Reply(550, "5.4.6", "Alias loop: this address cannot be delivered")


def may_post(mlist: MailingList, sender: str) -> bool:
    """Whether ``sender`` may post to ``mlist`` (the null sender never may)."""
    if not sender:
        return False
    if mlist.allowed_senders == "anyone":
        return True
    local, domain = split_address(sender)
    address = f"{local.lower()}@{domain}"
    if mlist.allowed_senders == "members":
        return address in {_lower_local(m) for m in mlist.members}
    allowed = mlist.allowed_senders
    return address in allowed or domain in allowed


def _lower_local(address: str) -> str:
    local, domain = split_address(address)
    return f"{local.lower()}@{domain}"


class LocalRecipients(Check):
    def __init__(self, directory: LiveDirectory | Directory) -> None:
        self.directory = directory

    def _current(self) -> Directory:
        d = self.directory
        return d.current() if isinstance(d, LiveDirectory) else d

    def local_domains(self) -> frozenset[str]:
        return frozenset(self._current().domains)

    def at_rcpt(self, submission: Submission, sender: str, recipient: str) -> Verdict:
        directory = self._current()
        found = directory.lookup(recipient)
        if found.kind is Kind.REMOTE:
            return CONTINUE
        if found.kind is Kind.UNKNOWN:
            log.info(
                "unknown local recipient: client=%s rcpt=<%s>", submission.client_ip, recipient
            )
            return Verdict.reject(UNKNOWN_USER)
        if found.kind is Kind.LIST and not may_post(directory.lists[found.address], sender):
            log.info("list post refused: from=<%s> list=<%s>", sender, found.address)
            return Verdict.reject(NOT_A_POSTER)
        if found.kind is Kind.ALIAS:
            expansion = directory.expand(recipient)
            if expansion.loop:
                log.warning("alias loop: rcpt=<%s> at <%s>", recipient, expansion.loop)
                return Verdict.reject(ALIAS_LOOP)
            if not (expansion.mailboxes or expansion.remote or expansion.lists):
                return Verdict.reject(UNKNOWN_USER)
        return CONTINUE

    def expand_recipient(
        self, submission: Submission, recipient: MailRecipient
    ) -> tuple[MailRecipient, ...] | None:
        directory = self._current()
        if directory.lookup(recipient.address).kind is not Kind.ALIAS:
            return None
        expansion = directory.expand(recipient.address)
        if expansion.unknown:
            log.warning(
                "alias %s: targets %s are not mailboxes (skipped)",
                recipient.address,
                ", ".join(expansion.unknown),
            )
        orcpt = recipient.orcpt or f"rfc822;{recipient.address}"
        notify = recipient.notify
        return (
            *(MailRecipient(t.address, notify, orcpt) for t in expansion.mailboxes),
            *(MailRecipient(a, notify, orcpt, forwarded=True) for a in expansion.remote),
            *(MailRecipient(a, notify, orcpt) for a in expansion.lists),
        )
