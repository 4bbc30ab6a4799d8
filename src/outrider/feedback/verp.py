"""VERP return paths: ``bounces+TOKEN@bounce.example.com`` names the recipient it was sent to.

A bounce that is not a standard DSN (a plain "user unknown" text) still comes back to
the envelope sender; when that sender encodes the recipient, the bounce is tied to it
whatever its form. The token is base32 (lower case, no padding) of ``recipient`` and,
when it fits, ``NUL job``, followed by ``-`` and a 6-character keyed hash (HMAC-SHA256
over the base address and the payload), so a forged or mangled address is recognised
and ignored. Base32 survives MTAs that change the case of local parts.

A local part may hold 64 octets (RFC 5321 4.5.3.1): when the token with the job does
not fit, the job is left out; when even the recipient does not fit, the sender is not
rewritten (:func:`encode` returns None).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

MAX_LOCAL = 64
MAC_CHARS = 6
DELIMITER = "+"


class VerpError(ValueError):
    """Not a VERP address of ours: malformed, or its hash does not match (forged)."""


@dataclass(frozen=True, slots=True)
class Verp:
    """What a VERP address says: the address it was built from, the recipient, the job."""

    base: str  # the envelope sender before rewriting: local@bounce-domain
    recipient: str
    job_id: str = ""


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str) -> bytes:
    try:
        return base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise VerpError("token is not base32") from None


def _mac(secret: bytes, base: str, payload: str) -> str:
    data = f"{base.lower()}\0{payload}".encode()
    return _b32(hmac.new(secret, data, hashlib.sha256).digest())[:MAC_CHARS]


def encode(secret: bytes, sender: str, recipient: str, job_id: str = "") -> str | None:
    """``sender`` rewritten for ``recipient``; None when the local part would exceed
    64 octets even without the job (or when the parts cannot be encoded)."""
    local, at, domain = sender.rpartition("@")
    if not at or not local or not recipient or "\0" in recipient or "\0" in job_id:
        return None
    candidates = [f"{recipient}\0{job_id}", recipient] if job_id else [recipient]
    for plain in candidates:
        payload = _b32(plain.encode("utf-8", "surrogateescape"))
        token = f"{payload}-{_mac(secret, sender, payload)}"
        new_local = f"{local}{DELIMITER}{token}"
        if len(new_local.encode("utf-8", "surrogateescape")) <= MAX_LOCAL:
            return f"{new_local}@{domain}"
    return None


def decode(secret: bytes, address: str) -> Verp:
    """The recipient (and job) ``address`` was made for; :class:`VerpError` otherwise."""
    local, at, domain = address.rpartition("@")
    base_local, plus, token = local.rpartition(DELIMITER)
    if not at or not plus or not base_local:
        raise VerpError(f"{address!r} carries no VERP token")
    payload, dash, mac = token.rpartition("-")
    if not dash or not payload or len(mac) != MAC_CHARS:
        raise VerpError(f"{address!r}: malformed VERP token")
    payload = payload.lower()
    base = f"{base_local}@{domain}"
    if not hmac.compare_digest(mac.lower(), _mac(secret, base, payload)):
        raise VerpError(f"{address!r}: VERP hash does not match (forged or another key)")
    try:
        plain = _unb32(payload).decode("utf-8", "surrogateescape")
    except UnicodeDecodeError:
        raise VerpError(f"{address!r}: malformed VERP token") from None
    recipient, _, job = plain.partition("\0")
    if not recipient:
        raise VerpError(f"{address!r}: empty recipient")
    return Verp(base, recipient, job)
