"""Maildir delivery as a :class:`~outrider.delivery.transport.Transport`.

Each recipient gets a file of its own in its mailbox (``Return-Path`` and
``Delivered-To`` added on top), written as :mod:`outrider.delivery.maildir` describes.
The file work runs in threads, a body from the spool is streamed chunk by chunk, and
every outcome is a reply the scheduler classifies like any SMTP reply:

- 250 2.0.0 once the message is durable in ``new/``;
- 550 5.1.3 for a recipient that cannot name a mailbox (nothing is created);
- 452 4.2.2 when the message would take the mailbox over its quota;
- 452 4.3.1 when the disk is full, 451 4.3.0 for any other file error (permissions,
  EIO): deferrals, so the message stays queued and nothing is lost.

A spool file that cannot be read (a damaged body) raises, as it does for SMTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from outrider.config.model import Config, DomainPolicy
from outrider.delivery.mailbox_path import (
    MAX_NAME_LENGTH,
    BadMailbox,
    MailboxName,
    check_template,
    default_mailbox_name,
    mailbox_path,
)
from outrider.delivery.maildir import MaildirFile, QuotaCache, ensure_maildir
from outrider.delivery.transport import DeliveryReport, Opened, RecipientReply, Route
from outrider.message.envelope import Envelope, Recipient
from outrider.smtp.replies import Reply
from outrider.spool.reader import Body, body_chunks, body_size

__all__ = ["MAILDIR_HOST", "MaildirConnection", "MaildirSettings", "MaildirTransport"]

log = logging.getLogger("outrider.delivery.maildir")

MAILDIR_HOST = "maildir"  # the "remote host" of logs, accounting rows and DSNs
DELIVERED = Reply(250, "2.0.0", "Delivered to mailbox")
OVER_QUOTA = Reply(452, "4.2.2", "Mailbox full: over quota")
DISK_FULL = Reply(452, "4.3.1", "Insufficient system storage for the mailbox")
BAD_SENDER = Reply(550, "5.1.7", "Bad sender address syntax: CR, LF or NUL in address")
BAD_RECIPIENT = Reply(550, "5.1.3", "Bad recipient address syntax: CR, LF or NUL in address")
_LINE_BREAKING = re.compile(r"[\r\n\x00]")
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MaildirSettings:
    """How local mail is written (the ``[local-domain]`` config fills this in).

    ``path``: the mailbox directory template, with ``{user}`` and optionally
    ``{domain}`` (e.g. ``/var/mail/{domain}/{user}/Maildir``). ``mailbox_name`` gives
    the mailbox for a recipient address (default: its local part, lower-cased); the name
    is validated before it becomes a path component. ``quota``: octets per mailbox
    (``None``: no quota). ``lf_line_endings``: store lines ending in LF, as Postfix,
    Exim and Dovecot's LDA do (``False`` keeps the CRLF octets as received).
    ``hostname``: the host part of the unique file names. ``quota_cache_ttl``: how long
    a mailbox's scanned size is trusted before it is scanned again.
    """

    path: str
    quota: int | None = None
    mailbox_name: MailboxName = default_mailbox_name
    max_name_length: int = MAX_NAME_LENGTH
    lf_line_endings: bool = True
    hostname: str = field(default_factory=socket.gethostname)
    quota_cache_ttl: float = 30.0

    def __post_init__(self) -> None:
        check_template(self.path)
        if self.quota is not None and self.quota < 0:
            raise ValueError(f"maildir quota {self.quota} is negative")


def error_reply(exc: OSError) -> Reply:
    """A file error as a deferral: the mail stays queued and is tried again."""
    if exc.errno == errno.ENOSPC:
        return DISK_FULL
    if exc.errno == errno.EDQUOT:
        return Reply(452, "4.2.2", "Mailbox full: file system quota exceeded")
    reason = exc.strerror or type(exc).__name__
    return Reply(451, "4.3.0", f"Cannot write to the mailbox: {reason}")


class MaildirTransport:
    def __init__(self, settings: MaildirSettings) -> None:
        self.settings = settings
        self.quota = QuotaCache(ttl=settings.quota_cache_ttl)

    def destination(self, domain: str, policy: DomainPolicy) -> str:
        return f"maildir:{domain}"

    async def open(self, route: Route) -> Opened:
        return Opened(MaildirConnection(self))

    def update_config(self, config: Config) -> None:
        return None  # the settings are given whole; a new config builds a new transport

    def head(self, envelope: Envelope, recipient: Recipient) -> bytes:
        eol = "\n" if self.settings.lf_line_endings else "\r\n"
        text = f"Return-Path: <{envelope.sender}>{eol}Delivered-To: {recipient.address}{eol}"
        return text.encode("utf-8", "surrogateescape")


class MaildirConnection:
    """Nothing is connected: a "connection" is the right to write, one batch at a time,
    so the queue's connection limit bounds the deliveries in flight."""

    usable = True

    def __init__(self, transport: MaildirTransport) -> None:
        self.transport = transport

    async def deliver(
        self, envelope: Envelope, recipients: list[Recipient], body: Body
    ) -> DeliveryReport:
        replies = [await self._deliver_one(envelope, r, body) for r in recipients]
        return DeliveryReport(replies=replies, remote_host=MAILDIR_HOST)

    async def can_carry(self, domain: str) -> bool:
        return True

    async def close(self) -> None:
        return None

    async def _deliver_one(self, envelope: Envelope, rcpt: Recipient, body: Body) -> RecipientReply:
        settings = self.transport.settings
        if _LINE_BREAKING.search(envelope.sender):
            return RecipientReply(rcpt, BAD_SENDER, "mail")
        if _LINE_BREAKING.search(rcpt.address):
            return RecipientReply(rcpt, BAD_RECIPIENT, "rcpt")
        try:
            name = settings.mailbox_name(rcpt.address)
            path = mailbox_path(settings.path, rcpt.domain, name, settings.max_name_length)
        except BadMailbox as exc:
            log.warning("%s: refused: %s", rcpt.address, exc)
            return RecipientReply(rcpt, Reply(550, "5.1.3", f"Bad mailbox name: {exc}"), "rcpt")
        head = self.transport.head(envelope, rcpt)
        try:
            file = await _in_thread(self._begin, path, len(head) + body_size(body))
        except OSError as exc:
            log.warning("%s: cannot deliver into %s: %s", rcpt.address, path, exc)
            return RecipientReply(rcpt, error_reply(exc), "data-end")
        if file is None:
            log.info("%s: mailbox %s is over its quota", rcpt.address, path)
            return RecipientReply(rcpt, OVER_QUOTA, "data-end")
        try:
            size = await self._write(file, head, body)
        except OSError as exc:
            log.warning("%s: cannot deliver into %s: %s", rcpt.address, path, exc)
            return RecipientReply(rcpt, error_reply(exc), "data-end")
        finally:
            if not file.committed:
                file.abort()
        self.transport.quota.add(path, size)
        return RecipientReply(rcpt, DELIVERED, "data-end")

    def _begin(self, path: str, size: int) -> MaildirFile | None:
        """In a thread: the mailbox made ready and a ``tmp/`` file opened, or None when
        the message would take the mailbox over its quota."""
        settings = self.transport.settings
        ensure_maildir(path)
        quota = settings.quota
        if quota is not None and not self.transport.quota.fits(path, size, quota):
            return None
        return MaildirFile(path, settings.hostname, lf=settings.lf_line_endings)

    async def _write(self, file: MaildirFile, head: bytes, body: Body) -> int:
        """Write the head and the body, then commit; OSError for a file error. The body
        is read in chunks (a spool error propagates: it is not the mailbox's fault)."""
        if isinstance(body, bytes):
            await _in_thread(_write_whole, file, head, body)
            return file.size
        await _in_thread(file.write, head)
        async with contextlib.aclosing(body_chunks(body)) as chunks:
            async for chunk in chunks:
                await _in_thread(file.write, chunk)
        await _in_thread(file.commit)
        return file.size


async def _in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn`` in a thread; when the caller is cancelled, the thread's work is waited
    for before the cancellation goes on, so no file is closed under a writing thread.
    A file it opened meanwhile is removed."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is None:
            result = task.result()
            if isinstance(result, MaildirFile):
                result.abort()
        raise


def _write_whole(file: MaildirFile, head: bytes, body: bytes) -> None:
    file.write(head)
    file.write(body)
    file.commit()
