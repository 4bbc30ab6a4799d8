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
from collections.abc import Callable, Mapping
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
from outrider.message.intern import shared

__all__ = ["LIMIT", "dump", "job_id", "load", "pack", "queue_id_of", "unpack"]

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


def _fields(env: Envelope, code: Callable[[str], int | str]) -> tuple[Any, ...]:
    flags = env.smtputf8 | env.body_8bit << 1 | env.body_binary << 2 | env.delay_warned << 3
    fields: list[Any] = [
        env.queue_id,
        code(env.sender),
        env.received_at,
        env.size,
        _RET_CODES[env.ret],
        env.envid,
        flags,
        code(env.client_address),
        code(env.helo),
        code(env.job_id),
        env.msg_id,
        code(env.vmta),
        _SOURCE_CODES[env.source],
        code(env.auth_user),
        code(env.listener),
        code(env.vmta_request),
        code(env.listener_vmta),
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
            code(r.last_reply),
            code(r.last_mta),
            r.relayed_owed,
        )
    return tuple(fields)


def _envelope(f: tuple[Any, ...], text: Callable[[Any], str]) -> Envelope:
    recipients = [
        Recipient(
            address=f[i],
            orcpt=f[i + 1],
            notify=None if f[i + 2] < 0 else Notify(f[i + 2]),
            status=_STATUSES[f[i + 3]],
            attempts=f[i + 4],
            next_attempt=f[i + 5],
            last_reply=text(f[i + 6]),
            last_mta=text(f[i + 7]),
            relayed_owed=f[i + 8],
        )
        for i in range(_FIELDS, len(f), _RCPT_FIELDS)
    ]
    flags = f[6]
    extra = f[17]
    return Envelope(
        queue_id=f[0],
        sender=text(f[1]),
        recipients=recipients,
        received_at=f[2],
        size=f[3],
        ret=_RETS[f[4]],
        envid=f[5],
        smtputf8=bool(flags & 1),
        body_8bit=bool(flags & 2),
        body_binary=bool(flags & 4),
        delay_warned=bool(flags & 8),
        client_address=text(f[7]),
        helo=text(f[8]),
        job_id=text(f[9]),
        msg_id=f[10],
        vmta=text(f[11]),
        source=_SOURCES[f[12]],
        auth_user=text(f[13]),
        listener=text(f[14]),
        vmta_request=text(f[15]),
        listener_vmta=text(f[16]),
        extra=NO_EXTRA if extra is None else dict(zip(extra[::2], extra[1::2], strict=True)),
        notices=f[18],
    )


def _full(text: str) -> str:
    return text


def pack(env: Envelope) -> bytes:
    """Every field of ``env`` and of its recipients, in one ``bytes`` (this process only:
    repeated strings are codes of its table)."""
    return marshal.dumps(_fields(env, _code))


def unpack(data: bytes) -> Envelope:
    """The envelope :func:`pack` was given (equal, not the same objects)."""
    return _envelope(marshal.loads(data), _text)


def dump(env: Envelope) -> bytes:
    """:func:`pack` with every string in full: for another process, or a later one (the
    schedule snapshot, spool/snapshot.py), within one Python version (marshal's)."""
    return marshal.dumps(_fields(env, _full))


def load(data: bytes) -> Envelope:
    """The envelope :func:`dump` was given; strings many messages repeat come back
    shared (message/intern.py). ValueError (or a subclass) for anything else."""
    try:
        fields = marshal.loads(data)
        if type(fields) is not tuple or (len(fields) - _FIELDS) % _RCPT_FIELDS:
            raise ValueError("not a dumped envelope")
        return _envelope(fields, shared)
    except (TypeError, KeyError, IndexError, EOFError) as exc:
        raise ValueError(f"not a dumped envelope: {exc!r}") from exc


def queue_id_of(data: bytes) -> str:
    """The queue id of a dumped (or packed) envelope, without building it."""
    fields = marshal.loads(data)
    if type(fields) is not tuple or not fields or type(fields[0]) is not str:
        raise ValueError("not a dumped envelope")
    return fields[0]


def job_id(data: bytes) -> str:
    """The job of a packed envelope, without building it (a look-up over every message)."""
    return _text(marshal.loads(data)[9])
