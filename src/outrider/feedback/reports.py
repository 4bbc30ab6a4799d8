"""Reading what arrives at a bounce domain: DSNs, ARF reports and plain replies (pure).

Only the ``email`` package's compat32 parser is used: it never raises on odd header
values and reads ``message/delivery-status`` as one header block per group (RFC 3464
2.1: the per-message fields, then one block per recipient). A report's returned
message (``message/rfc822`` or ``text/rfc822-headers``) gives the original's
Message-ID, To, Return-Path and X-Job when the reporter kept them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email
import email.message
import quopri
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.utils import getaddresses

Message = email.message.Message

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SPACE = re.compile(r"\s+")
MAX_TEXT = 500  # characters of a diagnostic kept


class ReportError(ValueError):
    """Not a message at all (nothing could be parsed)."""


@dataclass(frozen=True, slots=True)
class Returned:
    """The original message's fields, as the report returned them ("" when absent)."""

    message_id: str = ""
    to: str = ""
    sender: str = ""  # Return-Path (the original envelope sender)
    from_: str = ""
    job_id: str = ""  # X-Job, when the original kept it


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    final_recipient: str
    original_recipient: str  # as given, "rfc822;..." ("" when absent)
    action: str  # lower case: failed, delayed, delivered, relayed, expanded
    status: str
    diagnostic: str
    remote_mta: str

    @property
    def address(self) -> str:
        """Original-Recipient when it names an address, else Final-Recipient."""
        return address_of(self.original_recipient) or address_of(self.final_recipient)


@dataclass(frozen=True, slots=True)
class DsnReport:
    reporting_mta: str
    recipients: tuple[DsnRecipient, ...]
    returned: Returned


@dataclass(frozen=True, slots=True)
class ArfReport:
    feedback_type: str  # lower case: abuse, fraud, virus, other, not-spam, ...
    user_agent: str
    original_rcpt_to: str
    original_mail_from: str
    arrival_date: str
    source_ip: str
    returned: Returned


@dataclass(frozen=True, slots=True)
class PlainReply:
    """Anything else: an old-style bounce text, an auto-reply, a mailto unsubscribe."""

    subject: str
    text: str
    auto_submitted: str
    returned: Returned = field(default_factory=Returned)

    @property
    def status(self) -> str:
        """The first enhanced status code in the text, "" when it has none."""
        found = _STATUS.search(self.text)
        return found.group(0) if found else ""


Report = DsnReport | ArfReport | PlainReply


def parse_report(data: bytes) -> Report:
    """What ``data`` (a whole message) is; :class:`ReportError` if it is not mail."""
    if not data.strip():
        raise ReportError("empty message")
    try:
        msg = email.message_from_bytes(data)
    except Exception as exc:  # the compat32 parser is lenient; be safe anyway
        raise ReportError(f"cannot parse: {exc}") from None
    if not msg.keys():
        raise ReportError("no header fields")
    status_part = _first_part(msg, "message/delivery-status")
    feedback_part = _first_part(msg, "message/feedback-report")
    returned = _returned(msg)
    if feedback_part is not None:
        return _arf(feedback_part, returned)
    if status_part is not None:
        return _dsn(status_part, returned)
    return PlainReply(
        subject=_text(msg.get("Subject", "")),
        text=_body_text(msg),
        auto_submitted=_text(msg.get("Auto-Submitted", "")).lower(),
        returned=returned,
    )


def address_of(value: str) -> str:
    """``rfc822; Ann@Example.org`` -> ``Ann@Example.org`` ("" for other address types)."""
    kind, sep, rest = value.partition(";")
    if not sep:
        rest = kind
    elif kind.strip().lower() not in ("rfc822", "utf-8"):
        return ""
    return rest.strip().strip("<>").strip()


def mta_of(value: str) -> str:
    """``dns; mx.example.org`` -> ``mx.example.org``."""
    _, sep, rest = value.partition(";")
    return (rest if sep else value).strip()


def status_in(text: str) -> str:
    found = _STATUS.search(text)
    return found.group(0) if found else ""


def _text(value: object) -> str:
    """A header value as one line of text (RFC 2047 words decoded, folding undone)."""
    raw = str(value)
    if "=?" in raw:
        with contextlib.suppress(Exception):  # a malformed encoded word stays as it is
            raw = str(make_header(decode_header(raw)))
    return _SPACE.sub(" ", raw).strip()


def _first_part(msg: Message, content_type: str) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _blocks(part: Message) -> list[Message]:
    """A report part's header blocks: parsed by the email package as sub-messages, or
    (a part it kept as text, e.g. base64-encoded) parsed here."""
    payload = part.get_payload()
    if isinstance(payload, list):
        subs = [p for p in payload if isinstance(p, Message)]
        if any(p.keys() for p in subs):
            return subs
        # An encoded part (base64, quoted-printable) was read as a header-less message.
        payload = "".join(str(p.get_payload()) for p in subs)
    raw = _decoded(str(payload), part.get("Content-Transfer-Encoding", ""))
    text = raw.decode("utf-8", "replace")
    text = text.replace("\r\n", "\n")
    return [
        email.message_from_string(block.strip() + "\n")
        for block in re.split(r"\n\s*\n", text)
        if block.strip()
    ]


def _decoded(text: str, encoding: object) -> bytes:
    kind = str(encoding).strip().lower()
    data = text.encode("ascii", "replace")
    with contextlib.suppress(ValueError, binascii.Error):
        if kind == "base64":
            return base64.b64decode(data)
        if kind == "quoted-printable":
            return quopri.decodestring(data)
    return data


def _dsn(part: Message, returned: Returned) -> DsnReport:
    blocks = _blocks(part)
    head = blocks[0] if blocks else Message()
    reporting = mta_of(_text(head.get("Reporting-MTA", "")))
    recipients = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        final = _text(block.get("Final-Recipient", ""))
        if not final:
            continue
        diagnostic = _text(block.get("Diagnostic-Code", ""))
        _, sep, rest = diagnostic.partition(";")
        if sep and diagnostic.split(";", 1)[0].strip().lower() in ("smtp", "x-unix", "x-postfix"):
            diagnostic = rest.strip()
        status = _text(block.get("Status", "")) or status_in(diagnostic)
        recipients.append(
            DsnRecipient(
                final_recipient=final,
                original_recipient=_text(block.get("Original-Recipient", "")),
                action=_text(block.get("Action", "")).lower(),
                status=status_in(status) or status,
                diagnostic=diagnostic[:MAX_TEXT],
                remote_mta=mta_of(_text(block.get("Remote-MTA", ""))) or reporting,
            )
        )
    return DsnReport(reporting, tuple(recipients), returned)


def _arf(part: Message, returned: Returned) -> ArfReport:
    blocks = _blocks(part)
    fields = blocks[0] if blocks else Message()

    def get(name: str) -> str:
        return _text(fields.get(name, ""))

    return ArfReport(
        feedback_type=get("Feedback-Type").lower(),
        user_agent=get("User-Agent"),
        original_rcpt_to=address_of(get("Original-Rcpt-To")),
        original_mail_from=address_of(get("Original-Mail-From")),
        arrival_date=get("Arrival-Date") or get("Received-Date"),
        source_ip=get("Source-IP"),
        returned=returned,
    )


def _returned(msg: Message) -> Returned:
    """The returned original: a ``message/rfc822`` part, or ``text/rfc822-headers``."""
    original: Message | None = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                original = payload[0]
                break
        if ctype == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                original = email.message_from_bytes(raw.lstrip())
                break
    if original is None:
        return Returned()

    def first_address(name: str) -> str:
        value = _text(original.get(name, "")) if original is not None else ""
        found = [a for _, a in getaddresses([value]) if a]
        return found[0] if found else ""

    return Returned(
        message_id=_text(original.get("Message-ID", "")),
        to=first_address("To"),
        sender=first_address("Return-Path"),
        from_=first_address("From"),
        job_id=_text(original.get("X-Job", "")),
    )


def _body_text(msg: Message) -> str:
    """The first text/plain part's text (or the whole body), at most 20,000 characters."""
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_maintype() == "text":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                charset = part.get_content_charset() or "utf-8"
                try:
                    return raw.decode(charset, "replace")[:20000]
                except LookupError:
                    return raw.decode("utf-8", "replace")[:20000]
    payload = msg.get_payload()
    return payload[:20000] if isinstance(payload, str) else ""
