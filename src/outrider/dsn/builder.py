"""Delivery status notifications (RFC 3464 in a RFC 6522 multipart/report).

Pure: no I/O and no clock; the caller passes ``now`` and queues the returned bytes with
the null reverse-path to ``envelope.sender``. Callers decide *whether* to notify with
``should_bounce`` and ``wants_dsn``; ``build_dsn`` then writes one notice for all the
recipients given. SMTPUTF8 messages get the RFC 6533 ``message/global-*`` variant.

The returned DSN contains 8-bit octets when the returned message (or, for SMTPUTF8, a
UTF-8 address) does; queue it with ``body_8bit = not dsn.isascii()``.

A message larger than ``MAX_RETURNED_SIZE`` is never returned whole, so a caller only
needs its first ``MAX_RETURNED_SIZE + 2`` octets (:data:`RETURNED_HEAD`) to build the
notice, with the message's real size as ``original_size``: the header copy is then the
same as from the whole message.
"""

from __future__ import annotations

import binascii
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from email.header import Header
from typing import Literal

from outrider.message.domains import InvalidDomainError, normalize_domain
from outrider.message.envelope import Envelope, Notify, Recipient, Ret
from outrider.message.headers import rfc5322_date, split_header_block

NotifyKind = Literal["failed", "delayed", "delivered"]

_KIND_FLAGS: dict[str, Notify] = {
    "failed": Notify.FAILURE,
    "delayed": Notify.DELAY,
    "delivered": Notify.SUCCESS,
}

# RFC 3464 2.3.3 action values, the status class used when a caller gives none, and the
# notice's subject.
_ACTIONS: dict[str, tuple[str, str]] = {
    "failed": ("5.0.0", "Undelivered Mail Returned to Sender"),
    "delayed": ("4.0.0", "Delayed Mail (still being retried)"),
    "delivered": ("2.0.0", "Successful Mail Delivery Report"),
    "relayed": ("2.0.0", "Successful Mail Delivery Report"),
    "expanded": ("2.0.0", "Successful Mail Delivery Report"),
}

MAX_RETURNED_SIZE = 100_000  # a bigger original is returned as its header section only
RETURNED_HEAD = MAX_RETURNED_SIZE + 2  # octets of a bigger one that give the same headers

_CRLF = "\r\n"
_FOLD_AT = 78
_MAX_WORD = 900  # a word longer than this is split so no line exceeds RFC 5322's 998
_TEXT_WIDTH = 76
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}", re.ASCII)
_SMTP_REPLY = re.compile(r"[2-5]\d\d(?:[ -]|$)")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
_NOT_BCHARS = re.compile(r"[^0-9A-Za-z'()+_,\-./:=?]")
# RFC 6533 utf-8-addr-xtext: everything but QCHAR becomes \x{HEX}.
_NOT_QCHAR = re.compile(r"[^\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e]")


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    """One recipient to report on (the name is historical: delays and successes too)."""

    recipient: Recipient
    status: str  # RFC 3463 enhanced code, e.g. "5.1.1"
    diagnostic: str  # the remote reply "550 5.1.1 no such user" or a local explanation
    remote_mta: str = ""  # host that produced the reply; "" if none (local failure)
    last_attempt: float | None = None  # epoch seconds; defaults to the notice time
    will_retry_until: float | None = None  # for "delayed": when the message expires


def should_bounce(envelope: Envelope) -> bool:
    """False for the null reverse-path: a bounce is never bounced (RFC 5321 4.5.5)."""
    return envelope.sender.strip() not in ("", "<>")


def wants_dsn(recipient: Recipient, kind: NotifyKind) -> bool:
    """Whether the recipient's NOTIFY (RFC 3461 4.1) asks for this kind of notice."""
    notify = recipient.notify if recipient.notify is not None else Notify.default()
    return bool(notify & _KIND_FLAGS[kind])


def build_dsn(
    envelope: Envelope,
    recipients: Sequence[FailedRecipient],
    original: bytes,
    *,
    reporting_mta: str,
    now: float,
    action: str = "failed",
    queue_id_of_dsn: str | None = None,
    max_returned_size: int = MAX_RETURNED_SIZE,
    original_size: int | None = None,
) -> bytes:
    """The complete notice (CRLF lines) reporting ``action`` for every recipient given.

    The original is returned in full only for "failed" notices whose RET is not HDRS and
    whose size is within ``max_returned_size``; otherwise only its header section is
    (RFC 3461 4.3 ties RET=FULL to failed notices, and a delayed message is still queued).
    ``original`` may be only the first ``max_returned_size + 2`` octets of a bigger
    message whose size is ``original_size``.
    """
    if action not in _ACTIONS:
        raise ValueError(f"unknown DSN action {action!r}")
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    if not should_bounce(envelope):
        raise ValueError("no DSN may be sent to the null reverse-path")

    utf8 = envelope.smtputf8
    host = _ascii_domain(reporting_mta)
    default_status, subject = _ACTIONS[action]

    size = len(original) if original_size is None else original_size
    returned, returned_type, note = _returned_content(
        envelope, original, size, action, max_returned_size, utf8
    )
    text = _human_text(envelope, recipients, host, action, note)
    report = _delivery_status(envelope, recipients, host, action, default_status, now, utf8)

    if text.isascii():
        text_bytes, text_cte = text.encode("ascii"), "7bit"
    elif utf8:
        text_bytes, text_cte = text.encode("utf-8"), "8bit"
    else:
        text_bytes = binascii.b2a_qp(text.encode("utf-8"), istext=True)
        text_cte = "quoted-printable"
    report_bytes = report.encode("utf-8")
    report_cte = "7bit" if report_bytes.isascii() else "8bit"
    returned_cte = "7bit" if returned.isascii() else "8bit"
    outer_cte = "7bit" if "8bit" not in (text_cte, report_cte, returned_cte) else "8bit"

    boundary = _boundary(envelope.queue_id, now, host, (text_bytes, report_bytes, returned))
    report_type = "global-delivery-status" if utf8 else "delivery-status"
    if queue_id_of_dsn:
        message_id = f"<{queue_id_of_dsn}@{host}>"
    else:
        message_id = f"<{envelope.queue_id}.{action}.{int(now * 1000)}@{host}>"

    head = "".join(
        (
            _header("From", f"Mail Delivery System <MAILER-DAEMON@{host}>", utf8),
            # An address cannot be RFC 2047 encoded; see _recipient_address.
            f"To: <{_recipient_address(envelope.sender, utf8)}>\r\n",
            _header("Subject", subject, utf8),
            _header("Date", rfc5322_date(now), utf8),
            _header("Message-ID", message_id, utf8),
            "Auto-Submitted: auto-replied\r\n",
            "MIME-Version: 1.0\r\n",
            f"Content-Type: multipart/report; report-type={report_type};\r\n"
            f'\tboundary="{boundary}"\r\n',
            f"Content-Transfer-Encoding: {outer_cte}\r\n",
            "\r\n",
            "This is a MIME-encapsulated message.\r\n",
        )
    )
    delimiter = f"\r\n--{boundary}\r\n"
    parts = [
        head.encode("utf-8"),
        delimiter.encode("ascii"),
        (
            "Content-Description: Notification\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: {text_cte}\r\n\r\n"
        ).encode("ascii"),
        text_bytes,
        delimiter.encode("ascii"),
        (
            "Content-Description: Delivery report\r\n"
            f"Content-Type: message/{report_type}\r\n"
            f"Content-Transfer-Encoding: {report_cte}\r\n\r\n"
        ).encode("ascii"),
        report_bytes,
    ]
    if returned_type:  # RFC 3464 2.1: the returned content is optional
        whole = returned_type in ("message/rfc822", "message/global")
        description = "Undelivered message" if whole else "Message headers"
        parts += [
            delimiter.encode("ascii"),
            (
                f"Content-Description: {description}\r\n"
                f"Content-Type: {returned_type}\r\n"
                f"Content-Transfer-Encoding: {returned_cte}\r\n\r\n"
            ).encode("ascii"),
            returned,
        ]
    parts.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts)


def _returned_content(
    envelope: Envelope, original: bytes, size: int, action: str, limit: int, utf8: bool
) -> tuple[bytes, str, str]:
    """(content, its media type, a sentence for the text part) for the third part;
    ``original`` may be the first octets of a message of ``size`` > ``limit``."""
    if not original:
        return b"", "", "The original message is no longer available to be returned."
    whole = len(original) == size
    if action == "failed" and envelope.ret is not Ret.HDRS and size <= limit and whole:
        media_type = "message/global" if utf8 else "message/rfc822"
        return original, media_type, "A copy of the message is attached."
    headers, _ = split_header_block(original)
    media_type = "message/global-headers" if utf8 else "text/rfc822-headers"
    if action != "failed" or envelope.ret is Ret.HDRS:
        note = "The message's headers are attached."
    else:
        note = (
            f"The message ({size} bytes) is larger than the {limit} bytes"
            " returned in full, so only its headers are attached."
        )
    if len(headers) > limit:
        cut = headers.rfind(b"\r\n", 0, limit)
        headers = headers[: cut + 2] if cut >= 0 else b""
        note += f" The header section was shortened to {len(headers)} bytes."
    return headers, media_type, note


def _human_text(
    envelope: Envelope,
    recipients: Sequence[FailedRecipient],
    host: str,
    action: str,
    note: str,
) -> str:
    if action == "failed":
        intro = (
            "Your message could not be delivered to one or more recipients. "
            "The reasons are given below."
        )
    elif action == "delayed":
        intro = (
            "Your message has not been delivered yet to one or more recipients. "
            "Delivery will be retried; you do not need to send it again."
        )
    else:
        intro = "Your message was delivered to the recipients below, as you requested."
    paragraphs = [f"This is the mail delivery system at {host}.", intro, note]
    for item in recipients:
        reason = _one_line(item.diagnostic) or "no further details"
        if item.remote_mta:
            reason = f"{_one_line(item.remote_mta)} said: {reason}"
        if action == "delayed" and item.will_retry_until is not None:
            reason += f" (will be retried until {rfc5322_date(item.will_retry_until)})"
        lines = textwrap.wrap(
            reason,
            _TEXT_WIDTH,
            initial_indent="    ",
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
        paragraphs.append("\r\n".join([f"<{_one_line(item.recipient.address)}>", *lines]))
    paragraphs.append(f"Queue ID: {envelope.queue_id}")
    wrapped = []
    for paragraph in paragraphs[:3]:
        wrapped.append("\r\n".join(textwrap.wrap(paragraph, _TEXT_WIDTH)))
    return "\r\n\r\n".join(wrapped + paragraphs[3:]) + "\r\n"


def _delivery_status(
    envelope: Envelope,
    recipients: Sequence[FailedRecipient],
    host: str,
    action: str,
    default_status: str,
    now: float,
    utf8: bool,
) -> str:
    fields = [_header("Reporting-MTA", f"dns; {host}", utf8)]
    fields.append(_header("X-Outrider-Queue-ID", envelope.queue_id, utf8))
    fields.append(_header("X-Outrider-Sender", _address_field(envelope.sender, utf8), utf8))
    if envelope.envid:
        fields.append(_header("Original-Envelope-Id", _escape(envelope.envid, utf8), utf8))
    fields.append(_header("Arrival-Date", rfc5322_date(envelope.received_at), utf8))
    blocks = ["".join(fields)]
    for item in recipients:
        rcpt = item.recipient
        status = item.status if _STATUS.fullmatch(item.status) else default_status
        fields = []
        if rcpt.orcpt:
            fields.append(_header("Original-Recipient", _orcpt_field(rcpt.orcpt, utf8), utf8))
        fields.append(_header("Final-Recipient", _address_field(rcpt.address, utf8), utf8))
        fields.append(_header("Action", action, utf8))
        fields.append(_header("Status", status, utf8))
        if item.remote_mta:
            fields.append(_header("Remote-MTA", f"dns; {_escape(item.remote_mta, utf8)}", utf8))
        diagnostic = _one_line(item.diagnostic)
        if diagnostic:
            kind = "smtp" if _SMTP_REPLY.match(diagnostic) else "X-Outrider"
            fields.append(_header("Diagnostic-Code", f"{kind}; {_escape(diagnostic, utf8)}", utf8))
        last = item.last_attempt if item.last_attempt is not None else now
        fields.append(_header("Last-Attempt-Date", rfc5322_date(last), utf8))
        if action == "delayed" and item.will_retry_until is not None:
            fields.append(_header("Will-Retry-Until", rfc5322_date(item.will_retry_until), utf8))
        blocks.append("".join(fields))
    return "\r\n".join(blocks)


def _header(name: str, value: str, utf8: bool) -> str:
    """``Name: value`` folded at whitespace, ending in CRLF; RFC 2047 for 8-bit non-UTF8."""
    if not value.isascii() and not utf8:
        encoded = Header(value, "utf-8", header_name=name).encode(linesep=_CRLF)
        return f"{name}: {encoded}{_CRLF}"
    line = f"{name}: {value}"
    if len(line) <= _FOLD_AT:
        return line + _CRLF
    lines: list[str] = []
    current = f"{name}:"
    for word in value.split():
        while len(word) > _MAX_WORD:
            lines.append(current)
            current, word = " " + word[:_MAX_WORD], word[_MAX_WORD:]
        if len(current) + 1 + len(word) > _FOLD_AT and current.strip() != f"{name}:":
            lines.append(current)
            current = " " + word
        else:
            current += " " + word
    lines.append(current)
    return _CRLF.join(lines) + _CRLF


def _one_line(text: str) -> str:
    """Client- or remote-supplied text with line breaks and controls made into spaces."""
    return " ".join(_CONTROLS.sub(" ", text).split())


def _hex_escape(match: re.Match[str]) -> str:
    return "".join(f"\\x{{{ord(ch):02X}}}" for ch in match.group())


def _escape(text: str, utf8: bool) -> str:
    """One line; outside SMTPUTF8, non-ASCII becomes RFC 6533 ``\\x{HEX}`` to stay 7-bit."""
    text = _one_line(text)
    return text if utf8 or text.isascii() else re.sub(r"[^\x00-\x7f]+", _hex_escape, text)


def _address_field(address: str, utf8: bool) -> str:
    """``rfc822; a@b``, or RFC 6533 ``utf-8;`` for internationalised addresses."""
    address = _one_line(address)
    if address.isascii():
        return f"rfc822; {address}"
    if utf8:
        return f"utf-8; {address}"
    return f"utf-8; {_NOT_QCHAR.sub(_hex_escape, address)}"


def _orcpt_field(orcpt: str, utf8: bool) -> str:
    """The Original-Recipient field of an ORCPT (RFC 3464 2.3.1, RFC 6533 3).

    An ``rfc822`` address is ASCII by definition: one whose xtext decoded to non-ASCII
    (``rfc822;+C3+BCn+C3+AF@...``) is reported with the ``utf-8`` type, as is a ``utf-8``
    one. The ``utf-8`` address is written as ``utf-8-addr-unitext`` (plain UTF-8) in a
    ``message/global-delivery-status`` and as ``utf-8-addr-xtext`` (``\\x{HEX}``) in a
    7-bit ``message/delivery-status``. Other types are kept as given."""
    clean = _one_line(orcpt)
    addr_type, sep, address = clean.partition(";")
    if not sep:
        addr_type, address = "rfc822", clean
    addr_type, address = addr_type.strip(), address.strip()
    kind = addr_type.lower()
    if kind == "utf-8":
        address = utf8_addr_decode(address)
    elif address.isascii():
        return f"{addr_type or 'rfc822'};{address}"
    elif kind != "rfc822":
        return f"{addr_type};{_escape(address, utf8)}"
    if utf8 or address.isascii():
        return f"utf-8;{address}"
    return f"utf-8;{_NOT_QCHAR.sub(_hex_escape, address)}"


_EMBEDDED = re.compile(r"\\x\{([0-9A-Fa-f]{2,6})\}")


def utf8_addr_decode(address: str) -> str:
    """RFC 6533 utf-8-addr-xtext to the address it stands for (``\\x{FC}`` -> ``ü``); an
    escape that is no character is kept as written."""

    def char(match: re.Match[str]) -> str:
        code = int(match.group(1), 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF or code < 0x20 or code == 0x7F:
            return match.group()
        return chr(code)

    return _EMBEDDED.sub(char, address) if "\\x{" in address else address


def _ascii_domain(host: str) -> str:
    """A-label form of a host name for ``dns;`` fields and message ids; a name that is
    not a domain is kept as given (hex-escaped where it is not ASCII)."""
    try:
        return normalize_domain(host)
    except InvalidDomainError:
        return host if host.isascii() else _NOT_QCHAR.sub(_hex_escape, host)


def _recipient_address(address: str, utf8: bool) -> str:
    """The sender as a To: address; outside SMTPUTF8 an IDN domain becomes its A-label.

    A non-ASCII local part without SMTPUTF8 cannot occur (RFC 6531 requires SMTPUTF8 for
    such a MAIL FROM) and has no 7-bit form; it is left as UTF-8 rather than mangled.
    """
    address = _one_line(address).strip("<>")
    if utf8 or address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    return f"{local}{at}{_ascii_domain(domain)}" if at else address


def _boundary(queue_id: str, now: float, host: str, contents: Sequence[bytes]) -> str:
    """A deterministic boundary that occurs in none of the parts."""
    base = _NOT_BCHARS.sub("", f"{queue_id}.{int(now)}/{host}")[:60] or "outrider-dsn"
    candidate, serial = base, 0
    while any(f"--{candidate}".encode("ascii") in content for content in contents):
        serial += 1
        candidate = f"{base}.{serial}"
    return candidate
