"""Turn a finished SMTP transaction into a queued message (envelope + stored bytes).

This is Outrider's "cleanup" step: trace header, X-Job extraction, Message-ID lookup
and 8-bit detection. Pure: the caller passes the queue id and the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from outrider.message.envelope import Envelope, Notify, Recipient, Ret
from outrider.message.headers import extract_and_remove_header, header_value, received_header


@dataclass(frozen=True, slots=True)
class AcceptedRecipient:
    address: str
    notify: Notify | None
    orcpt: str | None


@dataclass(frozen=True, slots=True)
class SessionFacts:
    client_ip: str
    helo: str
    by_host: str
    protocol: str  # "SMTP", "ESMTP", "UTF8SMTP", ... (RFC 3848)


def assemble(
    *,
    queue_id: str,
    sender: str,
    recipients: Sequence[AcceptedRecipient],
    content: bytes,
    ret: Ret | None,
    envid: str | None,
    smtputf8: bool,
    body_8bit: bool,
    session: SessionFacts,
    now: float,
    honour_vmta_header: bool = False,
    listener_vmta: str | None = None,
) -> tuple[Envelope, bytes]:
    """The envelope and the bytes to store.

    ``X-Job`` and ``X-Virtual-MTA`` are always removed so they never leave Outrider; the
    virtual MTA named by the header is kept (in ``extra``) only when the listener
    honours it (``process-x-virtual-mta``).
    """
    content, job_id = extract_and_remove_header(content, "X-Job")
    content, vmta_header = extract_and_remove_header(content, "X-Virtual-MTA")
    extra: dict[str, str] = {}
    if honour_vmta_header and vmta_header:
        extra["x-virtual-mta"] = vmta_header
    if listener_vmta:
        extra["listener-vmta"] = listener_vmta
    msg_id = header_value(content, "Message-ID") or ""
    trace = received_header(
        helo=session.helo,
        client_ip=session.client_ip,
        client_rdns=None,
        by_host=session.by_host,
        protocol=session.protocol,
        queue_id=queue_id,
        recipient=recipients[0].address if len(recipients) == 1 else None,
        now=now,
    )
    data = trace + content
    envelope = Envelope(
        queue_id=queue_id,
        sender=sender,
        recipients=[Recipient(r.address, orcpt=r.orcpt, notify=r.notify) for r in recipients],
        received_at=now,
        size=len(data),
        ret=ret,
        envid=envid,
        smtputf8=smtputf8,
        body_8bit=body_8bit or not content.isascii(),
        client_address=session.client_ip,
        helo=session.helo,
        job_id=job_id or "",
        msg_id=msg_id.strip(),
        extra=extra,
    )
    return envelope, data
