"""The intake's unsubscribe step: add List-Unsubscribe and List-Unsubscribe-Post.

Runs in :meth:`outrider.intake.core.Intake.submit` after header completion and BEFORE
DKIM signing, so the signature covers both fields (the signer over-signs them, so they
cannot be added or changed later). Like the DKIM step it only reads and changes the
header section, so spilled messages are handled on their head.

Which messages get the headers is a pure decision (:func:`wanted`): only a message with
exactly one recipient (a token names one recipient; bulk mail is one message per
recipient anyway), with a sender domain (the null sender has no suppression list), and
no List-Unsubscribe of its own (the sender's own mechanism wins); then the per-message
request (the API's ``"unsubscribe"``, the trusted SMTP client's
``X-Outrider-Unsubscribe``) or else membership of ``[unsubscribe] sender-domains``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from outrider.config.model import UnsubscribeSettings
from outrider.local.srs import load_secret
from outrider.message.envelope import Envelope
from outrider.message.headers import extract_and_remove_header, header_value
from outrider.spool.spill import SpilledBody
from outrider.suppression.store import scope_of_sender
from outrider.unsubscribe.token import Unsubscribe, make_token, today

if TYPE_CHECKING:  # the intake imports this module
    from outrider.intake.content import Content
    from outrider.intake.submission import Submission

log = logging.getLogger("outrider.unsubscribe")

REQUEST_HEADER = "X-Outrider-Unsubscribe"
POST_FIELD = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF
_YES = frozenset({"yes", "true", "on", "1"})
_NO = frozenset({"no", "false", "off", "0"})


@dataclass(frozen=True, slots=True)
class UnsubscribeStep:
    """What the headers are made from; :attr:`outrider.intake.core.Intake.unsubscribe`
    holds one (None when ``[unsubscribe]`` has neither ``url`` nor ``mailto``)."""

    secret: bytes
    url: str | None = None
    mailto: str | None = None
    sender_domains: frozenset[str] = frozenset()
    max_age: float | None = None
    page_text: str = ""

    def header(self, token: str) -> bytes | None:
        """The List-Unsubscribe field for ``token`` (folded between its two URIs), or
        None when a line would be longer than RFC 5322 allows."""
        uris: list[str] = []
        if self.url is not None:
            uris.append(f"<{self.url.rstrip('/')}/{token}>")
        if self.mailto is not None:
            uris.append(f"<mailto:{self.mailto}?subject=unsubscribe:{token}>")
        lines = ["List-Unsubscribe: " + uris[0], *(" " + uri for uri in uris[1:])]
        if any(len(line) + 1 > MAX_LINE for line in lines):
            return None
        return (",\r\n".join(lines) + "\r\n").encode("ascii")

    def fields_for(self, recipient: str, scope: str, job_id: str, now: float) -> bytes | None:
        """Both fields for one recipient; None when no token fits in a header line (an
        enormous job name is dropped from the token first)."""
        for job in (job_id, ""):
            what = Unsubscribe(recipient, scope, job, today(now))
            try:
                field = self.header(make_token(self.secret, what))
            except ValueError:  # a newline in a field: cannot be signed
                return None
            if field is not None:
                return field + POST_FIELD
        return None

    def apply(
        self, content: Content, envelope: Envelope, asked: bool | None, now: float
    ) -> Content:
        """``content`` with the two fields added after the Received trace field, or
        unchanged when the message does not get them."""
        head = content if isinstance(content, bytes) else content.head
        if not wanted(
            self.sender_domains,
            sender=envelope.sender,
            recipients=len(envelope.recipients),
            asked=asked,
            has_list_unsubscribe=header_value(head, "List-Unsubscribe") is not None,
        ):
            return content
        recipient = envelope.recipients[0].address
        added = self.fields_for(recipient, scope_of_sender(envelope.sender), envelope.job_id, now)
        if added is None:
            log.warning("%s: unsubscribe token too long for a header: not added", envelope.queue_id)
            return content
        if isinstance(content, bytes):
            return insert_after_first_field(content, added)
        return SpilledBody(insert_after_first_field(content.head, added), content.tail)


def wanted(
    sender_domains: Collection[str],
    *,
    sender: str,
    recipients: int,
    asked: bool | None,
    has_list_unsubscribe: bool,
) -> bool:
    """Whether a message gets the List-Unsubscribe fields (see the module docstring)."""
    if recipients != 1 or has_list_unsubscribe:
        return False
    scope = scope_of_sender(sender)
    if not scope:
        return False
    if asked is not None:
        return asked
    return scope in sender_domains


def take_request(submission: Submission, content: Content) -> tuple[Content, bool | None]:
    """Remove ``X-Outrider-Unsubscribe`` (it never leaves Outrider) and read the request:
    the source's own (``submission.unsubscribe``, the API) wins; the header counts only
    from a client that may relay (trusted network or authenticated), like ``X-Job``."""
    head = content if isinstance(content, bytes) else content.head
    stripped, value = extract_and_remove_header(head, REQUEST_HEADER)
    if stripped is not head:
        content = stripped if isinstance(content, bytes) else SpilledBody(stripped, content.tail)
    if submission.unsubscribe is not None:
        return content, submission.unsubscribe
    if value is None or not submission.may_relay:
        return content, None
    word = value.strip().lower()
    return content, True if word in _YES else False if word in _NO else None


def insert_after_first_field(head: bytes, added: bytes) -> bytes:
    """``added`` after the first header field (the Received field header completion
    prepends), so trace fields stay on top."""
    if head.startswith(b"\r\n"):
        return added + head
    at = 0
    while True:
        end = head.find(b"\r\n", at)
        if end < 0:
            return added + head
        at = end + 2
        if head[at : at + 1] not in (b" ", b"\t"):
            return head[:at] + added + head[at:]


def step_from_config(settings: UnsubscribeSettings) -> UnsubscribeStep | None:
    """The step for ``[unsubscribe]``, its secret read (made on first use); None when
    neither ``url`` nor ``mailto`` is set."""
    if not settings.enabled:
        return None
    return UnsubscribeStep(
        secret=load_secret(Path(settings.secret_file), "unsubscribe secret"),
        url=settings.url,
        mailto=settings.mailto,
        sender_domains=frozenset(settings.sender_domains),
        max_age=settings.max_age,
        page_text=settings.page_text,
    )
