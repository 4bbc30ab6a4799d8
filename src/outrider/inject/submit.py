"""Validate a whole request, then hand one message per recipient to the intake.

:func:`prepare` does everything that can refuse the request (JSON shape, addresses,
template syntax, rendering for every recipient) before :func:`submit_all` queues the
first message, so a 400 means nothing was queued.

:func:`submit_all` goes through :meth:`outrider.intake.core.Intake.submit` like every
other source (MAIL and RCPT checks, message checks, header completion, the virtual
MTA, the durable store, the scheduler), in chunks of :data:`CHUNK` concurrent
submissions: the spool's committer syncs a whole chunk's files in one group commit, so
10,000 recipients cost a few dozen fsync rounds, not 10,000. Messages are rendered and
built in a worker thread (the ``email`` package is slow enough to stall the event loop
otherwise), the next chunk while the current one is being stored. Every message is
durable when the reply is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from outrider.inject.build import Skeleton, build_message
from outrider.inject.render import CompiledContent, check_renders, compile_content
from outrider.inject.request import (
    Builder,
    FieldProblem,
    InjectError,
    InjectRequest,
    Recipient,
    parse_request,
)
from outrider.intake.core import Accepted, Intake
from outrider.intake.submission import MailEnvelope, MailRecipient, Submission
from outrider.intake.verdict import Verdict
from outrider.message.envelope import Source
from outrider.smtp.replies import LOCAL_ERROR, Reply

log = logging.getLogger("outrider.inject")

CHUNK = 256


@dataclass(frozen=True, slots=True)
class Prepared:
    request: InjectRequest
    compiled: CompiledContent
    skeleton: Skeleton | None  # built content's constant parts (None: raw content)


@dataclass
class InjectResult:
    """The reply's content: a queue id per accepted recipient, the refusals."""

    queue_ids: dict[str, str] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (address, reply text)
    accepted: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "success_count": self.accepted,
            "failure_count": len(self.failed),
            "failed_recipients": [address for address, _ in self.failed],
            "errors": [f"{address}: {reply}" for address, reply in self.failed],
            "queue_ids": self.queue_ids,
        }


def prepare_body(raw: bytes, known_vmtas: Collection[str] | None = None) -> Prepared:
    """:func:`prepare` on a request body (JSON); :class:`InjectError` when it is not JSON."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InjectError([FieldProblem("", f"the request body is not JSON: {exc}")]) from None
    return prepare(data, known_vmtas)


def prepare(data: Any, known_vmtas: Collection[str] | None = None) -> Prepared:
    """Parse, compile and render-check the request; :class:`InjectError` on any problem.
    ``known_vmtas``: the virtual MTAs and pools ``virtual_mta`` may name (an unknown one
    is an error here, where SMTP's X-Virtual-MTA would be ignored: the caller asked).
    CPU-bound (renders every recipient once): run it off the event loop."""
    request = parse_request(data)
    vmta = request.virtual_mta
    if vmta is not None and known_vmtas is not None and vmta not in known_vmtas:
        raise InjectError([FieldProblem("virtual_mta", "no such virtual MTA or pool")])
    compiled = compile_content(request)
    check_renders(compiled, request.recipients)
    skeleton = Skeleton(request) if isinstance(request.content, Builder) else None
    return Prepared(request, compiled, skeleton)


def submission_for(request: InjectRequest, *, auth_user: str, client_ip: str) -> Submission:
    """An API submission: trusted (the caller has the inject right), its job, virtual
    MTA and ENVID from the request; Date and Message-ID added when raw content lacks them."""
    return Submission(
        source=Source.API,
        client_ip=client_ip,
        protocol="HTTP",
        client_trusted=True,
        auth_user=auth_user,
        vmta_request=request.virtual_mta,
        job_id=request.job_id,
        envid=request.envid,
        smtputf8=request.smtputf8,
        add_missing_headers=True,
        unsubscribe=request.unsubscribe,
    )


def build_chunk(
    prepared: Prepared,
    batch: Sequence[tuple[int, Recipient, str]],
    *,
    hostname: str,
    now: float,
) -> list[bytes | Exception]:
    """Render and build each (index, recipient, queue id) of a chunk."""
    out: list[bytes | Exception] = []
    for index, recipient, queue_id in batch:
        try:
            rendered = prepared.compiled.render(recipient, index)
            message_id = f"<{queue_id}@{hostname}>"
            if prepared.skeleton is not None:
                data = prepared.skeleton.message(
                    recipient, rendered, message_id=message_id, now=now
                )
            else:
                data = build_message(
                    prepared.request, recipient, rendered, message_id=message_id, now=now
                )
            out.append(data)
        except Exception as exc:  # validated already: only a surprise gets here
            log.exception("inject: cannot build the message for %s", recipient.email)
            out.append(exc)
    return out


async def _verdict(result: Verdict | Any) -> Verdict:
    return result if isinstance(result, Verdict) else await result


async def submit_all(
    intake: Intake,
    prepared: Prepared,
    *,
    auth_user: str,
    client_ip: str = "",
    chunk: int = CHUNK,
) -> InjectResult:
    """One message per recipient through ``intake``; never raises for one recipient."""
    request = prepared.request
    submission = submission_for(request, auth_user=auth_user, client_ip=client_ip)
    result = InjectResult()
    sender = request.envelope_sender
    refused = (await _verdict(intake.check_mail(submission, sender))).reply
    if refused is not None:
        result.failed = [(r.email, str(refused)) for r in request.recipients]
        return result

    def batch_at(start: int) -> list[tuple[int, Recipient, str]]:
        end = min(start + chunk, len(request.recipients))
        return [(i, request.recipients[i], intake.new_queue_id()) for i in range(start, end)]

    def build(batch: list[tuple[int, Recipient, str]]) -> list[bytes | Exception]:
        return build_chunk(prepared, batch, hostname=intake.hostname, now=intake.clock())

    async def one(index: int, rcpt: Recipient, queue_id: str, data: bytes | Exception) -> None:
        if isinstance(data, Exception):
            intake.release_queue_id(queue_id)
            result.failed.append((rcpt.email, str(LOCAL_ERROR)))
            return
        reply = await _submit_one(intake, submission, sender, rcpt, queue_id, data)
        if reply is None:
            result.queue_ids[rcpt.email] = queue_id
            result.accepted += 1
        else:
            intake.release_queue_id(queue_id)  # a no-op once stored into
            result.failed.append((rcpt.email, str(reply)))

    batch = batch_at(0)
    building = asyncio.ensure_future(asyncio.to_thread(build, batch))
    start = 0
    while batch:
        messages = await building
        start += len(batch)
        upcoming = batch_at(start)
        if upcoming:
            building = asyncio.ensure_future(asyncio.to_thread(build, upcoming))
        await asyncio.gather(
            *(one(i, rcpt, qid, data) for (i, rcpt, qid), data in zip(batch, messages, strict=True))
        )
        batch = upcoming
    return result


async def _submit_one(
    intake: Intake,
    submission: Submission,
    sender: str,
    rcpt: Recipient,
    queue_id: str,
    data: bytes,
) -> Reply | None:
    """None when stored, else the refusal (the RCPT checks', the intake's)."""
    try:
        verdict = await _verdict(intake.check_rcpt(submission, sender, rcpt.email))
        if verdict.reply is not None:
            return verdict.reply
        mail = MailEnvelope(sender, (MailRecipient(rcpt.email),))
        outcome = await intake.submit(submission, mail, data, queue_id=queue_id)
    except Exception:
        log.exception("inject: cannot submit the message for %s", rcpt.email)
        return LOCAL_ERROR
    return None if isinstance(outcome, Accepted) else outcome.reply
