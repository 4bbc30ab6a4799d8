"""Unsubscribe tokens: who unsubscribes from what, signed so nobody can forge one.

A token names the recipient, the suppression scope (the sender domain), the job and the
day it was issued, and carries an HMAC-SHA256 over them (truncated to 16 bytes), all
base64url without padding so it fits a URL path and a mail subject. It is not encrypted:
the recipient's own address is in it, which is no secret to the recipient. Tokens do not
expire by default: an unsubscribe link must keep working for as long as people keep the
mail (``max_age`` can bound it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

VERSION = "1"
MAC_BYTES = 16
DAY = 86400.0


class TokenError(ValueError):
    """A token that is malformed, forged, or too old."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    recipient: str
    scope: str  # the sender domain whose suppression list takes the address; "" = global
    job_id: str = ""
    issued_day: int = 0  # days since the epoch


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise TokenError("not base64url") from exc


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()[:MAC_BYTES]


def make_token(secret: bytes, what: Unsubscribe) -> str:
    fields = (VERSION, what.recipient, what.scope, what.job_id, str(what.issued_day))
    if any("\n" in f for f in fields):
        raise ValueError("token fields cannot contain newlines")
    payload = "\n".join(fields).encode("utf-8")
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def read_token(
    secret: bytes, token: str, *, now: float | None = None, max_age: float | None = None
) -> Unsubscribe:
    """The unsubscribe ``token`` stands for; :class:`TokenError` if it is not genuine."""
    body, dot, mac = token.strip().partition(".")
    if not dot or not body or not mac:
        raise TokenError("malformed token")
    payload = _unb64(body)
    if not hmac.compare_digest(_unb64(mac), _mac(secret, payload)):
        raise TokenError("bad signature")
    try:
        version, recipient, scope, job_id, day = payload.decode("utf-8").split("\n")
        issued_day = int(day)
    except ValueError as exc:
        raise TokenError("malformed token") from exc
    if version != VERSION or not recipient:
        raise TokenError("unknown token version")
    if max_age is not None:
        age = (time.time() if now is None else now) - issued_day * DAY
        if age > max_age + DAY:
            raise TokenError("token expired")
    return Unsubscribe(recipient, scope, job_id, issued_day)


def today(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // DAY)
