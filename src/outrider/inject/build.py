"""Assemble one recipient's message with Python's ``email`` package.

Built content: ``From``, ``To: "Name" <email>``, ``Reply-To``, ``Subject``, ``Date``,
``Message-ID`` (``<queue id@hostname>``, so the message and its queue entry share a
name) and the request's headers (one of the same name replaces the builder's), then the
body: text/plain or text/html alone, multipart/alternative for both, inline
attachments with a ``content_id`` in multipart/related beside the HTML part, the others
in multipart/mixed. The ``email`` package picks the transfer encodings (7bit,
quoted-printable or base64) and RFC 2047 encoded words for non-ASCII headers; with an
internationalised address (SMTPUTF8) the headers are UTF-8 instead (RFC 6532).

Raw content is used as given, with its line endings made CRLF; header completion in the
intake adds Date and Message-ID when it lacks them.
"""

from __future__ import annotations

import email.policy
import re
from email.headerregistry import Address
from email.message import EmailMessage

from outrider.inject.render import Rendered
from outrider.inject.request import Attachment, Builder, InjectRequest, Mailbox, Recipient
from outrider.message.headers import rfc5322_date

_NEWLINES = re.compile(r"\r\n|\r|\n")
# Without SMTPUTF8, non-ASCII bodies are quoted-printable or base64 (7bit-safe), so a
# next hop without 8BITMIME needs no conversion.
_SMTP = email.policy.SMTP.clone(max_line_length=78, cte_type="7bit")
_SMTPUTF8 = email.policy.SMTPUTF8.clone(max_line_length=78)


def raw_message(text: str) -> bytes:
    """Raw content with CRLF line endings, ending in one."""
    data = _NEWLINES.sub("\r\n", text)
    if not data.endswith("\r\n"):
        data += "\r\n"
    return data.encode("utf-8")


def address(box: Mailbox | Recipient) -> Address:
    """A header address; a name is quoted or encoded as needed by the policy."""
    try:
        return Address(display_name=box.name, addr_spec=box.email)
    except (ValueError, IndexError):  # a form the header parser does not take back
        user, _, domain = box.email.rpartition("@")
        return Address(display_name=box.name, username=user, domain=domain)


def build_message(
    request: InjectRequest,
    recipient: Recipient,
    rendered: Rendered,
    *,
    message_id: str,
    now: float,
) -> bytes:
    """The message for one recipient, as bytes with CRLF line endings."""
    content = request.content
    if not isinstance(content, Builder):
        return raw_message(rendered.raw if rendered.raw is not None else content)
    msg = EmailMessage(policy=_SMTPUTF8 if request.smtputf8 else _SMTP)
    msg["From"] = address(content.sender)
    msg["To"] = address(recipient)
    if content.reply_to is not None:
        msg["Reply-To"] = address(content.reply_to)
    msg["Subject"] = rendered.subject
    msg["Date"] = rfc5322_date(now)
    msg["Message-ID"] = message_id
    for name, value in rendered.headers:
        del msg[name]
        msg[name] = value
    _body(msg, rendered, content.attachments)
    for part in msg.walk():  # the email package repeats it on parts it adds
        if part is not msg:
            del part["MIME-Version"]
    return msg.as_bytes()


def _body(msg: EmailMessage, rendered: Rendered, attachments: tuple[Attachment, ...]) -> None:
    text, html = rendered.text_body, rendered.html_body
    if text is not None:
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    else:
        msg.set_content(html or "", subtype="html")
    inline = [a for a in attachments if a.content_id and html is not None]
    if inline:
        html_part = msg if text is None else _html_part(msg)
        for item in inline:
            maintype, subtype = item.content_type.split("/", 1)
            html_part.add_related(
                item.data,
                maintype=maintype,
                subtype=subtype,
                cid=f"<{item.content_id}>",
                filename=item.file_name or None,
                disposition="inline",
            )
    for item in attachments:
        if item in inline:
            continue
        maintype, subtype = item.content_type.split("/", 1)
        cid = f"<{item.content_id}>" if item.content_id else None
        if maintype == "text":
            msg.add_attachment(
                item.data.decode("utf-8", "replace"),
                subtype=subtype,
                filename=item.file_name or None,
                cid=cid,
            )
        else:
            msg.add_attachment(
                item.data,
                maintype=maintype,
                subtype=subtype,
                filename=item.file_name or None,
                cid=cid,
            )


def _html_part(msg: EmailMessage) -> EmailMessage:
    for part in msg.iter_parts():
        if isinstance(part, EmailMessage) and part.get_content_type() == "text/html":
            return part
    return msg
