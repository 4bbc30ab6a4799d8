"""Header completion: turn accepted content into the envelope and the bytes to store.

This is Outrider's "cleanup" step, the same for every source: Date and Message-ID
for a submitted message that lacks them (RFC 6409 8), ``X-Job`` and ``X-Virtual-MTA``
removed so they never leave Outrider, Message-ID read, 8-bit content detected and the
``Received:`` trace header prepended. Pure: the caller passes the queue id and the
time. Each step copies the content only when it changes it.

Every step reads and changes the header section only, so a spilled message
(:class:`~outrider.spool.spill.SpilledBody`: the header section in memory, the rest in
the spool) is completed the same way, on its head; its tail is never read (whether it
is all ASCII was noted as it was written).

``X-Job`` names the job a message is paused, released and accounted under, so it is
honoured only from a client that may relay on its own (in ``relay-networks``, or
authenticated); from anyone else it is removed and ignored, or an outsider could put
mail into an operator's job.
"""

from __future__ import annotations

import logging

from outrider.intake.content import Content
from outrider.intake.submission import MailEnvelope, Submission
from outrider.message.envelope import FORWARDED, Envelope, Recipient
from outrider.message.headers import (
    extract_and_remove_header,
    header_value,
    received_header,
    rfc5322_date,
)
from outrider.spool.spill import SpilledBody

log = logging.getLogger("outrider.intake")


def missing_headers(content: bytes, *, queue_id: str, hostname: str, now: float) -> bytes:
    """The Date and Message-ID fields ``content`` lacks ("" when it has both)."""
    added = b""
    if header_value(content, "Date") is None:
        added += f"Date: {rfc5322_date(now)}\r\n".encode("ascii")
    if header_value(content, "Message-ID") is None:
        added += f"Message-ID: <{queue_id}@{hostname}>\r\n".encode()
    return added


def finish_message(
    submission: Submission,
    mail: MailEnvelope,
    content: Content,
    *,
    queue_id: str,
    hostname: str,
    now: float,
) -> tuple[Envelope, Content]:
    """The envelope (virtual MTA not chosen yet) and the content to store: bytes, or
    for spilled content a :class:`SpilledBody` with the completed head and the same tail.

    The virtual MTA named by ``X-Virtual-MTA`` is kept (in ``vmta_request``) only when
    the submission lets the header choose (``process-x-virtual-mta``); the job named by
    ``X-Job`` only when the client is trusted or authenticated (a job the source
    gives, ``submission.job_id``, always wins).
    """
    spilled: SpilledBody | None = None
    if not isinstance(content, bytes):
        spilled, content = content, content.head
    if submission.add_missing_headers:
        added = missing_headers(content, queue_id=queue_id, hostname=hostname, now=now)
        if added:
            content = added + content
    content, job_header = extract_and_remove_header(content, "X-Job")
    if job_header and submission.job_id is None and not submission.may_relay:
        log.debug(
            "%s: X-Job %r from untrusted anonymous client %s ignored",
            queue_id,
            job_header,
            submission.client_ip or submission.source.value,
        )
        job_header = None
    content, vmta_header = extract_and_remove_header(content, "X-Virtual-MTA")
    vmta_request = submission.vmta_request or (
        vmta_header if submission.vmta_header and vmta_header else ""
    )
    msg_id = header_value(content, "Message-ID") or ""
    recipients = mail.recipients
    trace = received_header(
        helo=submission.helo,
        client_ip=submission.client_ip,
        client_rdns=None,
        by_host=hostname,
        protocol=submission.protocol,
        queue_id=queue_id,
        recipient=recipients[0].address if len(recipients) == 1 else None,
        now=now,
    )
    data: Content
    if spilled is None:
        data = trace + content
        size = len(data)
        body_8bit = submission.body_8bit or not content.isascii()
    else:
        data = SpilledBody(trace + content, spilled.tail)
        size = data.size
        body_8bit = submission.body_8bit or not (content.isascii() and spilled.tail.ascii)
    envelope = Envelope(
        queue_id=queue_id,
        sender=mail.sender,
        recipients=[Recipient(r.address, orcpt=r.orcpt, notify=r.notify) for r in recipients],
        received_at=now,
        size=size,
        ret=submission.ret,
        envid=submission.envid,
        smtputf8=submission.smtputf8,
        body_8bit=body_8bit,
        body_binary=submission.body_binary,
        client_address=submission.client_ip,
        helo=submission.helo,
        job_id=submission.job_id if submission.job_id is not None else job_header or "",
        msg_id=msg_id.strip(),
        source=submission.source,
        auth_user=submission.auth_user or "",
        listener=submission.listener,
        vmta_request=vmta_request,
        listener_vmta=submission.listener_vmta or "",
    )
    forwarded = [str(i) for i, r in enumerate(recipients) if r.forwarded]
    if forwarded:
        envelope.extra = {**envelope.extra, FORWARDED: ",".join(forwarded)}
    return envelope, data
