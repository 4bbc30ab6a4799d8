"""An envelope packed into one ``bytes`` object, for messages waiting for their retry.

A deferred message spends nearly all its life waiting, and a million of them held as
objects cost about 650 octets each for the envelope alone (the object, its recipient,
the recipient list, the address, the Message-ID, boxed floats and ints). Packed, the
same state is one ``bytes`` of about 250 octets: :func:`pack` when the message starts
waiting, :func:`unpack` when it comes due (or the console needs it). This is an
in-memory form only, never written anywhere: the spool's format is
:mod:`outrider.spool.codec`, and this one may change between releases.

Strings that many messages repeat (senders, client addresses, HELO names, virtual MTAs,
deferral replies) are stored as a small integer: their index in a process-wide table
(:data:`LIMIT` entries, append-only, so a packed message never outlives its codes).
Past the limit new strings are stored in full, so unique values (VERP senders) can
fill the table but never grow it without bound.
"""

from __future__ import annotations

import marshal
from collections.abc import Mapping
from typing import Any

from outrider.message.envelope import (
    NO_EXTRA,
    Envelope,
    Notify,
    RcptStatus,
    Recipient,
    Ret,
    Source,
)

__all__ = ["LIMIT", "job_id", "pack", "unpack"]

LIMIT = 65_536  # strings given a code; later ones are stored in full

_codes: dict[str, int] = {}
_strings: list[str] = []

_RETS: tuple[Ret | None, ...] = (None, Ret.FULL, Ret.HDRS)
_RET_CODES = {ret: i for i, ret in enumerate(_RETS)}
_SOURCES = tuple(Source)
_SOURCE_CODES = {source: i for i, source in enumerate(_SOURCES)}
_STATUSES = tuple(RcptStatus)
_STATUS_CODES = {status: i for i, status in enumerate(_STATUSES)}
_FIELDS = 19  # envelope fields before the recipients
_RCPT_FIELDS = 9


def _code(text: str) -> int | str:
    """The table's code for ``text`` (given one on first sight), or the text itself."""
    code = _codes.get(text)
    if code is not None:
        return code
    if len(_strings) >= LIMIT:
        return text
    code = _codes[text] = len(_strings)
    _strings.append(text)
    return code


def _text(value: int | str) -> str:
    return _strings[value] if type(value) is int else value  # type: ignore[return-value]


def _extra(extra: Mapping[str, str]) -> tuple[str, ...] | None:
    if not extra:
        return None
    return tuple(item for pair in extra.items() for item in pair)


def pack(env: Envelope) -> bytes:
    """Every field of ``env`` and of its recipients, in one ``bytes``."""
    flags = env.smtputf8 | env.body_8bit << 1 | env.body_binary << 2 | env.delay_warned << 3
    fields: list[Any] = [
        env.queue_id,
        _code(env.sender),
        env.received_at,
        env.size,
        _RET_CODES[env.ret],
        env.envid,
        flags,
        _code(env.client_address),
        _code(env.helo),
        _code(env.job_id),
        env.msg_id,
        _code(env.vmta),
        _SOURCE_CODES[env.source],
        _code(env.auth_user),
        _code(env.listener),
        _code(env.vmta_request),
        _code(env.listener_vmta),
        _extra(env.extra),
        env.notices,
    ]
    for r in env.recipients:
        fields += (
            r.address,
            r.orcpt,
            -1 if r.notify is None else r.notify.value,
            _STATUS_CODES[r.status],
            r.attempts,
            r.next_attempt,
            _code(r.last_reply),
            _code(r.last_mta),
            r.relayed_owed,
        )
    return marshal.dumps(tuple(fields))


def unpack(data: bytes) -> Envelope:
    """The envelope :func:`pack` was given (equal, not the same objects)."""
    f = marshal.loads(data)
    recipients = [
        Recipient(
            address=f[i],
            orcpt=f[i + 1],
            notify=None if f[i + 2] < 0 else Notify(f[i + 2]),
            status=_STATUSES[f[i + 3]],
            attempts=f[i + 4],
            next_attempt=f[i + 5],
            last_reply=_text(f[i + 6]),
            last_mta=_text(f[i + 7]),
            relayed_owed=f[i + 8],
        )
        for i in range(_FIELDS, len(f), _RCPT_FIELDS)
    ]
    flags = f[6]
    extra = f[17]
    return Envelope(
        queue_id=f[0],
        sender=_text(f[1]),
        recipients=recipients,
        received_at=f[2],
        size=f[3],
        ret=_RETS[f[4]],
        envid=f[5],
        smtputf8=bool(flags & 1),
        body_8bit=bool(flags & 2),
        body_binary=bool(flags & 4),
        delay_warned=bool(flags & 8),
        client_address=_text(f[7]),
        helo=_text(f[8]),
        job_id=_text(f[9]),
        msg_id=f[10],
        vmta=_text(f[11]),
        source=_SOURCES[f[12]],
        auth_user=_text(f[13]),
        listener=_text(f[14]),
        vmta_request=_text(f[15]),
        listener_vmta=_text(f[16]),
        extra=NO_EXTRA if extra is None else dict(zip(extra[::2], extra[1::2], strict=True)),
        notices=f[18],
    )


def job_id(data: bytes) -> str:
    """The job of a packed envelope, without building it (a look-up over every message)."""
    return _text(marshal.loads(data)[9])
