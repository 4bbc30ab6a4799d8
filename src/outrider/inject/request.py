"""Parse and validate an injection request (KumoMTA's format) into dataclasses.

Every problem is collected, not just the first, each naming its field the way a client
would write it (``recipients[3].email``), so a campaign with several bad addresses is
fixed in one round trip. Nothing here renders templates: :mod:`outrider.inject.render`
does, and adds its own problems to the same list before anything is queued.

Addresses are checked with the SMTP grammar's own path parser
(:func:`outrider.smtp.grammar.parse_rcpt`) and domain normalisation, so the API accepts
exactly what an SMTP client could submit.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from outrider.message.domains import InvalidDomainError, is_address_literal, normalize_domain
from outrider.smtp.grammar import GrammarError, has_control, parse_mail, parse_rcpt

MAX_RECIPIENTS = 10_000
MAX_ENVID = 100
MAX_NAME = 200  # job id and virtual MTA names
TOP_FIELDS = frozenset(
    {
        "envelope_sender",
        "recipients",
        "substitutions",
        "content",
        "job_id",
        "virtual_mta",
        "envid",
        "template_engine",
        "unsubscribe",
    }
)
RECIPIENT_FIELDS = frozenset({"email", "name", "substitutions"})
BUILDER_FIELDS = frozenset(
    {"from", "reply_to", "subject", "text_body", "html_body", "headers", "attachments"}
)
ATTACHMENT_FIELDS = frozenset({"file_name", "content_type", "data", "content_id", "base64"})
# The message's MIME structure is the builder's: these cannot be set through ``headers``.
STRUCTURAL_HEADERS = frozenset({"mime-version", "content-type", "content-transfer-encoding"})
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]{1,76}")  # RFC 5322 ftext, kept to one line
_MIME_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]*")


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "error": self.error}


class InjectError(ValueError):
    """The request is refused (400); ``problems`` lists every field that is wrong."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.error}" for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Mailbox:
    email: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    name: str = ""
    substitutions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Attachment:
    file_name: str
    content_type: str
    data: bytes
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class Builder:
    """The ``content`` object: the message is built from these parts. ``subject``,
    the bodies and the header values are templates."""

    sender: Mailbox  # "from"
    subject: str
    text_body: str | None = None
    html_body: str | None = None
    reply_to: Mailbox | None = None
    headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class InjectRequest:
    envelope_sender: str  # "" is the null reverse-path
    recipients: tuple[Recipient, ...]
    content: str | Builder  # raw RFC 5322 text, or the parts to build it from
    substitutions: Mapping[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    virtual_mta: str | None = None
    envid: str | None = None
    # List-Unsubscribe for these messages: True adds it, False never; None: [unsubscribe]
    unsubscribe: bool | None = None

    @property
    def smtputf8(self) -> bool:
        """Whether any address needs SMTPUTF8 (RFC 6531): then the headers carry UTF-8."""
        addresses = [self.envelope_sender, *(r.email for r in self.recipients)]
        if isinstance(self.content, Builder):
            addresses.append(self.content.sender.email)
            if self.content.reply_to is not None:
                addresses.append(self.content.reply_to.email)
        return not all(a.isascii() for a in addresses)

    @property
    def templated(self) -> bool:
        """Raw content is a template only when the request gives substitutions."""
        return bool(self.substitutions) or any(r.substitutions for r in self.recipients)


def check_address(text: str, *, null_ok: bool = False) -> str | None:
    """Why ``text`` is not an address the SMTP grammar would accept; None when it is."""
    if null_ok and text == "":
        return None
    if not text or len(text) > 254 or has_control(text) or "<" in text or ">" in text:
        return "not a valid address"
    try:
        if null_ok:  # a reverse-path: no bare <postmaster>
            parse_mail(f"<{text}> SMTPUTF8")
        else:
            parse_rcpt(f"<{text}>", smtputf8=True)
    except GrammarError:
        return "not a valid address"
    if "@" not in text:  # <Postmaster>, which RCPT allows
        return None
    domain = text.rpartition("@")[2]
    if not is_address_literal(domain):
        try:
            normalize_domain(domain)
        except InvalidDomainError as exc:
            return f"not a valid domain: {exc.reason}"
    return None


class _Problems:
    def __init__(self) -> None:
        self.items: list[FieldProblem] = []

    def add(self, where: str, error: str) -> None:
        self.items.append(FieldProblem(where, error))

    def unknown(self, where: str, value: Mapping[str, Any], known: frozenset[str]) -> None:
        for key in value:
            if key not in known:
                self.add(f"{where}{key}", "unknown field")

    def string(
        self, where: str, value: Any, *, required: bool = False, allow_empty: bool = True
    ) -> str | None:
        if value is None:
            if required:
                self.add(where, "required")
            return None
        if not isinstance(value, str):
            self.add(where, "must be a string")
            return None
        if not allow_empty and not value:
            self.add(where, "must not be empty")
            return None
        return value

    def one_line(self, where: str, value: Any, *, required: bool = False) -> str | None:
        text = self.string(where, value, required=required)
        if text is not None and ("\r" in text or "\n" in text):
            self.add(where, "must be one line (no CR or LF)")
            return None
        return text

    def substitutions(self, where: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(where, "must be an object")
            return {}
        for key in value:
            if not key.isidentifier():
                self.add(f"{where}.{key}", "a substitution name must be an identifier")
        return value


def parse_request(data: Any) -> InjectRequest:
    """The request as dataclasses; :class:`InjectError` with every problem found."""
    p = _Problems()
    if not isinstance(data, dict):
        raise InjectError([FieldProblem("", "the request body must be a JSON object")])
    p.unknown("", data, TOP_FIELDS)
    engine = data.get("template_engine")
    if engine is not None and engine != "jinja":
        p.add("template_engine", "only 'jinja' is supported")
    sender = p.string("envelope_sender", data.get("envelope_sender"), required=True)
    if sender is not None and (why := check_address(sender, null_ok=True)):
        p.add("envelope_sender", why)
    recipients = _recipients(p, data.get("recipients"))
    substitutions = p.substitutions("substitutions", data.get("substitutions"))
    content = _content(p, data.get("content"))
    job_id = _name(p, "job_id", data.get("job_id"))
    vmta = _name(p, "virtual_mta", data.get("virtual_mta"))
    envid = p.string("envid", data.get("envid"))
    if envid is not None and (
        not envid or len(envid) > MAX_ENVID or not all(0x21 <= ord(c) <= 0x7E for c in envid)
    ):
        p.add("envid", f"1 to {MAX_ENVID} printable ASCII characters")
    unsubscribe = data.get("unsubscribe")
    if unsubscribe is not None and not isinstance(unsubscribe, bool):
        p.add("unsubscribe", "must be true or false")
        unsubscribe = None
    if p.items or sender is None or content is None:
        raise InjectError(p.items or [FieldProblem("", "invalid request")])
    return InjectRequest(
        envelope_sender=sender,
        recipients=recipients,
        content=content,
        substitutions=substitutions,
        job_id=job_id,
        virtual_mta=vmta,
        envid=envid,
        unsubscribe=unsubscribe,
    )


def _name(p: _Problems, where: str, value: Any) -> str | None:
    text = p.string(where, value)
    if text is not None and (len(text) > MAX_NAME or not _NAME.fullmatch(text)):
        p.add(where, "letters, digits and . _ : @ + - only, at most 200")
        return None
    return text


def _recipients(p: _Problems, value: Any) -> tuple[Recipient, ...]:
    if value is None:
        p.add("recipients", "required")
        return ()
    if not isinstance(value, list):
        p.add("recipients", "must be a list")
        return ()
    if not value:
        p.add("recipients", "at least one recipient is required")
        return ()
    if len(value) > MAX_RECIPIENTS:
        p.add("recipients", f"at most {MAX_RECIPIENTS} recipients per request")
        return ()
    out: list[Recipient] = []
    for i, item in enumerate(value):
        where = f"recipients[{i}]"
        if not isinstance(item, dict):
            p.add(where, "must be an object")
            continue
        p.unknown(f"{where}.", item, RECIPIENT_FIELDS)
        email = p.string(f"{where}.email", item.get("email"), required=True)
        if email is not None and (why := check_address(email)):
            p.add(f"{where}.email", why)
            email = None
        name = p.one_line(f"{where}.name", item.get("name")) or ""
        subs = p.substitutions(f"{where}.substitutions", item.get("substitutions"))
        if email is not None:
            out.append(Recipient(email, name, subs))
    return tuple(out)


def _mailbox(p: _Problems, where: str, value: Any, *, required: bool) -> Mailbox | None:
    if value is None:
        if required:
            p.add(where, "required")
        return None
    if isinstance(value, str):
        value = {"email": value}
    if not isinstance(value, dict):
        p.add(where, "must be an object {email, name} or an address")
        return None
    p.unknown(f"{where}.", value, frozenset({"email", "name"}))
    email = p.string(f"{where}.email", value.get("email"), required=True)
    if email is not None and (why := check_address(email)):
        p.add(f"{where}.email", why)
        return None
    name = p.one_line(f"{where}.name", value.get("name")) or ""
    return Mailbox(email, name) if email is not None else None


def _content(p: _Problems, value: Any) -> str | Builder | None:
    if value is None:
        p.add("content", "required")
        return None
    if isinstance(value, str):
        if not value.strip():
            p.add("content", "must not be empty")
            return None
        if "\x00" in value:
            p.add("content", "must not contain NUL")
            return None
        return value
    if not isinstance(value, dict):
        p.add("content", "must be raw message text or a builder object")
        return None
    p.unknown("content.", value, BUILDER_FIELDS)
    sender = _mailbox(p, "content.from", value.get("from"), required=True)
    reply_to = _mailbox(p, "content.reply_to", value.get("reply_to"), required=False)
    subject = p.string("content.subject", value.get("subject")) or ""
    text_body = p.string("content.text_body", value.get("text_body"))
    html_body = p.string("content.html_body", value.get("html_body"))
    if "text_body" not in value and "html_body" not in value:
        p.add("content", "text_body or html_body is required")
    headers = _headers(p, value.get("headers"))
    attachments = _attachments(p, value.get("attachments"))
    if sender is None:
        return None
    return Builder(
        sender=sender,
        subject=subject,
        text_body=text_body,
        html_body=html_body,
        reply_to=reply_to,
        headers=headers,
        attachments=attachments,
    )


def _headers(p: _Problems, value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        p.add("content.headers", "must be an object of header name to value")
        return ()
    out: list[tuple[str, str]] = []
    for name, raw in value.items():
        where = f"content.headers.{name}"
        if not _HEADER_NAME.fullmatch(name):
            p.add(where, "not a valid header name")
            continue
        if name.lower() in STRUCTURAL_HEADERS:
            p.add(where, "set by the builder; use text_body, html_body and attachments")
            continue
        text = p.one_line(where, raw, required=True)
        if text is not None:
            out.append((name, text))
    return tuple(out)


def _attachments(p: _Problems, value: Any) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        p.add("content.attachments", "must be a list")
        return ()
    out: list[Attachment] = []
    for i, item in enumerate(value):
        where = f"content.attachments[{i}]"
        if not isinstance(item, dict):
            p.add(where, "must be an object")
            continue
        p.unknown(f"{where}.", item, ATTACHMENT_FIELDS)
        name = p.one_line(f"{where}.file_name", item.get("file_name")) or ""
        ctype = p.string(f"{where}.content_type", item.get("content_type"), required=True)
        if ctype is not None and not _MIME_TYPE.fullmatch(ctype):
            p.add(f"{where}.content_type", "not a MIME type (type/subtype)")
            ctype = None
        cid = p.one_line(f"{where}.content_id", item.get("content_id"))
        encoded = item.get("base64", True)
        if not isinstance(encoded, bool):
            p.add(f"{where}.base64", "must be true or false")
            continue
        data = p.string(f"{where}.data", item.get("data"), required=True)
        if data is None:
            continue
        if encoded:
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                p.add(f"{where}.data", "not valid base64")
                continue
        else:
            raw = data.encode("utf-8")
        if ctype is not None:
            out.append(Attachment(name, ctype, raw, cid or None))
    return tuple(out)
