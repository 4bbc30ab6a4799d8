"""Serialisation of envelopes and recipient-state records, and the spool file framing.

A spool file is::

    prefix   = MAGIC version:u8 env_len:u32 body_len:u64 body_crc:u32 prefix_crc:u32
    envelope = env_len bytes of compact UTF-8 JSON (versioned, see FORMAT_VERSION);
               may end with spaces (a spilled body's file is padded to fit)
    body     = body_len bytes, the message as received
    tail     = zero or more records: tag:u8 len:u32 crc:u32 payload

``prefix_crc`` covers the fixed fields and the envelope, so a file cut anywhere inside its
header is detected. Each tail record holds the full state of some recipients (by index),
so replaying records in order gives the latest state; a record whose tag, length or CRC
does not check out marks the end of the valid tail (a write torn by a crash).

Record tags: ``b"S"`` (written since issue 15): ``crc`` is the CRC-32 of the tag, the
length and the payload, so a damaged tag or length byte is caught by the checksum and not
only by the tag comparison. ``b"R"`` (older releases; still read, never written): ``crc``
covers the payload only. A file may hold both kinds (old records, then new ones appended
after an upgrade). ``tests/unit/spool/test_codec_golden.py`` pins the exact bytes.

JSON via the C accelerator is faster here than pickle/marshal on dict-shaped data, safe to
parse, and readable with standard tools when an operator inspects a spool file.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
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

MAGIC = b"ORSP"
FORMAT_VERSION = 1

_PREFIX = struct.Struct("<4sBIQI")  # magic, version, env_len, body_len, body_crc
_PREFIX_CRC = struct.Struct("<I")
PREFIX_SIZE = _PREFIX.size + _PREFIX_CRC.size
_RECORD = struct.Struct("<cII")  # tag, payload length, crc
_RECORD_HEAD = struct.Struct("<cI")  # the part of the header the crc covers
_RECORD_CRC = struct.Struct("<I")
_RECORD_TAG = b"S"  # crc over tag + length + payload
_RECORD_TAG_V1 = b"R"  # crc over the payload only: read, never written
MAX_RECORD_PAYLOAD = 64 * 1024 * 1024  # larger lengths can only be garbage

_NOTIFY_LETTERS = ((Notify.SUCCESS, "S"), (Notify.FAILURE, "F"), (Notify.DELAY, "D"))
_STATUS_BY_VALUE = {s.value: s for s in RcptStatus}
_SOURCE_BY_VALUE = {s.value: s for s in Source}
# Envelopes written before the typed metadata fields (no "src" key) kept three of them
# in ``extra``: field key -> old extra key. Read into the fields, so such spool files
# still recover with their metadata.
_LEGACY_EXTRA = {"au": "auth", "vr": "x-virtual-mta", "lv": "listener-vmta"}

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
_decode = json.JSONDecoder().decode


class CodecError(ValueError):
    """Bytes that are not a valid envelope, prefix or record."""


class UnsupportedFormatError(CodecError):
    """A well-formed file of a format version this code does not know (written by a newer
    release): it must be left alone, not quarantined."""


@dataclass(frozen=True, slots=True)
class Prefix:
    version: int
    env_len: int
    body_len: int
    body_crc: int

    @property
    def body_offset(self) -> int:
        return PREFIX_SIZE + self.env_len

    @property
    def tail_offset(self) -> int:
        return PREFIX_SIZE + self.env_len + self.body_len


# --- envelope ------------------------------------------------------------------------------


def _notify_to_json(notify: Notify | None) -> str | None:
    if notify is None:
        return None
    return "".join(letter for flag, letter in _NOTIFY_LETTERS if flag in notify)


def _notify_from_json(value: object) -> Notify | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise CodecError(f"bad notify: {value!r}")
    notify = Notify.NEVER
    for flag, letter in _NOTIFY_LETTERS:
        if letter in value:
            notify |= flag
    return notify


def _state(r: Recipient) -> list[Any]:
    state: list[Any] = [r.status.value, r.attempts, r.next_attempt, r.last_reply, r.last_mta]
    if r.relayed_owed:
        state.append(1)
    return state


def _apply_state(r: Recipient, state: Sequence[Any]) -> None:
    # Five fields before relayed_owed existed; a sixth only when it is set.
    status, attempts, next_attempt, last_reply, last_mta, *rest = state
    r.status = _STATUS_BY_VALUE[status]
    r.attempts = int(attempts)
    r.next_attempt = float(next_attempt)
    r.last_reply = shared(str(last_reply))
    r.last_mta = shared(str(last_mta))
    r.relayed_owed = bool(rest[0]) if rest else False


def _recipient(row: Sequence[Any]) -> Recipient:
    address, orcpt, notify, *state = row
    rcpt = Recipient(address=str(address), orcpt=orcpt, notify=_notify_from_json(notify))
    _apply_state(rcpt, state)
    return rcpt


def encode_envelope(env: Envelope) -> bytes:
    """Compact, versioned JSON of every envelope and recipient field."""
    doc = {
        "v": FORMAT_VERSION,
        "q": env.queue_id,
        "s": env.sender,
        "t": env.received_at,
        "z": env.size,
        "ret": env.ret.value if env.ret is not None else None,
        "env": env.envid,
        "u8": env.smtputf8,
        "b8": env.body_8bit,
        "ip": env.client_address,
        "helo": env.helo,
        "job": env.job_id,
        "mid": env.msg_id,
        "vmta": env.vmta,
        "src": env.source.value,
        "au": env.auth_user,
        "ls": env.listener,
        "vr": env.vmta_request,
        "lv": env.listener_vmta,
        "x": dict(env.extra) if env.extra else {},  # copying the shared empty one is slow
        "r": [[r.address, r.orcpt, _notify_to_json(r.notify), *_state(r)] for r in env.recipients],
    }
    if env.body_binary:  # written only when set: other envelopes keep their exact bytes
        doc["bin"] = True
    return _encoder.encode(doc).encode("utf-8")


def decode_envelope(data: bytes) -> Envelope:
    try:
        doc = _decode(data.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("v") != FORMAT_VERSION:
            raise CodecError("unsupported envelope version")
        # Built in one go, so the list has no spare room (it is kept per queued message).
        recipients = [_recipient(row) for row in doc["r"]]
        ret = doc["ret"]
        if not isinstance(doc["x"], dict):
            raise CodecError("extra is not an object")
        extra = {str(k): str(v) for k, v in doc["x"].items()}
        if "src" not in doc:
            for key, old in _LEGACY_EXTRA.items():
                if old in extra:
                    doc[key] = extra.pop(old)
        # Fields most queued messages repeat are shared (see message/intern.py); the
        # queue id, the recipient addresses and the Message-ID are each message's own.
        return Envelope(
            queue_id=str(doc["q"]),
            sender=shared(str(doc["s"])),
            recipients=recipients,
            received_at=float(doc["t"]),
            size=int(doc["z"]),
            ret=Ret(ret) if ret is not None else None,
            envid=doc["env"],
            smtputf8=bool(doc["u8"]),
            body_8bit=bool(doc["b8"]),
            body_binary=bool(doc.get("bin", False)),  # absent in files of older releases
            client_address=shared(str(doc["ip"])),
            helo=shared(str(doc["helo"])),
            job_id=shared(str(doc["job"])),
            msg_id=str(doc["mid"]),
            vmta=shared(str(doc["vmta"])),
            source=_SOURCE_BY_VALUE[doc.get("src", Source.SMTP.value)],
            auth_user=shared(str(doc.get("au", ""))),
            listener=shared(str(doc.get("ls", ""))),
            vmta_request=shared(str(doc.get("vr", ""))),
            listener_vmta=shared(str(doc.get("lv", ""))),
            extra=extra or NO_EXTRA,
        )
    except CodecError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise CodecError(f"bad envelope: {exc}") from exc


# --- file prefix ---------------------------------------------------------------------------


def encode_prefix(envelope_json: bytes, body: bytes) -> bytes:
    """Fixed prefix plus envelope: everything before the body."""
    return encode_prefix_for(envelope_json, len(body), zlib.crc32(body))


def encode_prefix_for(envelope_json: bytes, body_len: int, body_crc: int) -> bytes:
    """:func:`encode_prefix` for a body that is not in memory (a spilled one), given its
    length and CRC. The envelope may carry trailing spaces (JSON whitespace), which is
    how a spilled body's file is made to start exactly where its body already is."""
    fixed = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(envelope_json), body_len, body_crc)
    crc = zlib.crc32(envelope_json, zlib.crc32(fixed))
    return fixed + _PREFIX_CRC.pack(crc) + envelope_json


# CRC-32 of a concatenation from the CRCs of its parts (zlib's crc32_combine, which
# Python's zlib does not expose): a body's head is only final after its tail was written
# and checksummed, and the tail is never read back to checksum it again.
_CRC_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial (bit-reflected)."""
    m = 1 << 31
    p = 0
    while m:
        if a & m:
            p ^= b
            if not a & (m - 1):
                break
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1
    return p


def _x2n_table() -> tuple[int, ...]:
    p = 1 << 30  # x^1
    table = [p]
    for _ in range(31):
        p = _multmodp(p, p)
        table.append(p)
    return tuple(table)


_X2N = _x2n_table()  # x^(2^n) modulo the polynomial


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """``zlib.crc32(a + b)`` from ``crc1 = zlib.crc32(a)``, ``crc2 = zlib.crc32(b)`` and
    ``len2 = len(b)``: a few hundred integer operations, whatever the lengths."""
    p = 1 << 31  # x^0
    k = 3  # len2 counts octets: x^(8 * len2)
    n = len2
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return _multmodp(p, crc1) ^ crc2


def decode_prefix(head: bytes) -> Prefix:
    """Parse the fixed prefix (first PREFIX_SIZE bytes); the envelope is checked separately."""
    if len(head) < PREFIX_SIZE:
        raise CodecError("truncated prefix")
    magic, version, env_len, body_len, body_crc = _PREFIX.unpack_from(head)
    if magic != MAGIC:
        raise CodecError("not a spool file")
    if version != FORMAT_VERSION:
        raise UnsupportedFormatError(f"unsupported spool format version {version}")
    return Prefix(version, env_len, body_len, body_crc)


def check_header(head: bytes, prefix: Prefix) -> bytes:
    """Verify the prefix CRC over ``head`` (prefix + envelope); returns the envelope JSON."""
    end = prefix.body_offset
    if len(head) < end:
        raise CodecError("truncated envelope")
    (stored,) = _PREFIX_CRC.unpack_from(head, _PREFIX.size)
    envelope_json = head[PREFIX_SIZE:end]
    if zlib.crc32(envelope_json, zlib.crc32(head[: _PREFIX.size])) != stored:
        raise CodecError("header checksum mismatch")
    return envelope_json


def check_body(body: bytes, prefix: Prefix) -> None:
    if len(body) != prefix.body_len:
        raise CodecError(f"body is {len(body)} octets, expected {prefix.body_len}")
    if zlib.crc32(body) != prefix.body_crc:
        raise CodecError("body checksum mismatch")


# --- recipient state records ---------------------------------------------------------------


ENVELOPE_ROW = "e"  # a tail row with the envelope's notice state, not a recipient's


def encode_record(
    indexed: Iterable[tuple[int, Recipient]], envelope: Envelope | None = None
) -> bytes:
    """One tail record with the full state of the given (index, recipient) pairs and,
    when ``envelope`` is given, its notice state (delay warned, notices owed), so both
    become durable in one write."""
    rows: list[list[Any]] = [[i, *_state(r)] for i, r in indexed]
    if envelope is not None:
        rows.append([ENVELOPE_ROW, int(envelope.delay_warned), envelope.notices])
    payload = _encoder.encode(rows).encode("utf-8")
    head = _RECORD_HEAD.pack(_RECORD_TAG, len(payload))
    return head + _RECORD_CRC.pack(zlib.crc32(payload, zlib.crc32(head))) + payload


def iter_records(tail: bytes) -> Iterator[tuple[int, list[list[Any]]]]:
    """Yield ``(end_offset, rows)`` for each intact record; stop at the first torn one."""
    pos = 0
    size = len(tail)
    header = _RECORD.size
    while pos + header <= size:
        tag, length, crc = _RECORD.unpack_from(tail, pos)
        end = pos + header + length
        if length == 0 or length > MAX_RECORD_PAYLOAD or end > size:
            return
        payload = tail[pos + header : end]
        if tag == _RECORD_TAG:
            start = zlib.crc32(tail[pos : pos + _RECORD_HEAD.size])
        elif tag == _RECORD_TAG_V1:
            start = 0
        else:
            return
        if zlib.crc32(payload, start) != crc:
            return
        try:
            rows = _decode(payload.decode("utf-8"))
        except ValueError:
            return
        if not isinstance(rows, list):
            return
        yield end, rows
        pos = end


def apply_records(env: Envelope, tail: bytes) -> int:
    """Replay the tail onto ``env``; returns the length of its valid part."""
    valid = 0
    recipients = env.recipients
    for end, rows in iter_records(tail):
        try:
            for row in rows:
                index, *state = row
                if index == ENVELOPE_ROW:
                    env.delay_warned = bool(state[0])
                    env.notices = str(state[1])
                    continue
                if not isinstance(index, int) or index < 0:
                    raise IndexError(index)
                _apply_state(recipients[index], state)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CodecError(f"bad status record: {exc}") from exc
        valid = end
    return valid
