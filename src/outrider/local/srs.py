"""SRS, the Sender Rewriting Scheme: forwarded mail keeps passing SPF.

A message forwarded by an alias to a remote address leaves with an envelope sender of
this server's SRS domain, so the next hop's SPF check is about us, not the original
sender (whose SPF record does not list us). The rewritten address carries the original
one, a timestamp and a keyed hash, so a bounce coming back to it can be sent on to the
original sender, and nobody can use the domain as an open bounce relay: an address
without a valid hash, or older than ``max_age``, is refused at RCPT time.

The forms are those of libsrs2 (Postfix's postsrsd, Exim's SRS support):

* ``SRS0=HHHH=TT=example.com=alice@srs.example.net`` for ``alice@example.com``;
* ``SRS1=HHHH=first.example==HHHH=TT=example.com=alice@srs.example.net`` when the
  sender is already another forwarder's SRS0 address (forwarded twice): the bounce
  goes back to that first forwarder, which undoes its own rewriting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from pathlib import Path

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_DAY = 86400
_SLOTS = 1024  # two base32 characters of days
HASH_LENGTH = 6


class SrsError(ValueError):
    """An SRS address that is malformed, forged or too old."""


def _timestamp(now: float) -> str:
    days = int(now // _DAY) % _SLOTS
    return _B32[days >> 5] + _B32[days & 31]


def _age_days(stamp: str, now: float) -> int:
    try:
        value = (_B32.index(stamp[0].upper()) << 5) | _B32.index(stamp[1].upper())
    except (ValueError, IndexError):
        raise SrsError(f"bad SRS timestamp {stamp!r}") from None
    return (int(now // _DAY) - value) % _SLOTS


@dataclass(frozen=True, slots=True)
class Srs:
    secret: bytes
    domain: str  # the SRS domain: its MX must be this server
    max_age_days: int = 21

    def _hash(self, *parts: str) -> str:
        data = "\0".join(p.lower() for p in parts).encode("utf-8", "surrogateescape")
        digest = hmac.new(self.secret, data, hashlib.sha256).digest()
        return base64.b32encode(digest).decode("ascii")[:HASH_LENGTH]

    def forward(self, sender: str, now: float | None = None) -> str:
        """The envelope sender for mail ``sender`` sent that this server forwards."""
        now = time.time() if now is None else now
        local, at, domain = sender.rpartition("@")
        if not at or not local or not sender:
            return sender  # the null sender and bare names are never rewritten
        tag = local[:5].upper()
        if tag == "SRS0=":  # another forwarder's address: point back at that forwarder
            rest = local[5:]
            return f"SRS1={self._hash(domain, rest)}={domain}=={rest}@{self.domain}"
        if tag == "SRS1=":  # forwarded twice already: keep the first forwarder
            _, _, tail = local[5:].partition("=")
            first, sep, rest = tail.partition("==")
            if sep and first:
                return f"SRS1={self._hash(first, rest)}={first}=={rest}@{self.domain}"
        stamp = _timestamp(now)
        return f"SRS0={self._hash(stamp, domain, local)}={stamp}={domain}={local}@{self.domain}"

    def reverse(self, address: str, now: float | None = None) -> str:
        """The address a bounce to our SRS ``address`` goes to; raises :class:`SrsError`."""
        now = time.time() if now is None else now
        local, _, _ = address.rpartition("@")
        tag = local[:5].upper()
        if tag == "SRS0=":
            parts = local[5:].split("=", 3)
            if len(parts) != 4 or not all(parts):
                raise SrsError(f"malformed SRS0 address {address!r}")
            digest, stamp, domain, user = parts
            self._check(digest, self._hash(stamp, domain, user))
            if _age_days(stamp, now) > self.max_age_days:
                raise SrsError(f"SRS address {address!r} has expired")
            return f"{user}@{domain}"
        if tag == "SRS1=":
            digest, _, tail = local[5:].partition("=")
            first, sep, rest = tail.partition("==")
            if not (sep and first and rest and digest):
                raise SrsError(f"malformed SRS1 address {address!r}")
            self._check(digest, self._hash(first, rest))
            return f"SRS0={rest}@{first}"
        raise SrsError(f"{address!r} is not an SRS address")

    @staticmethod
    def _check(given: str, expected: str) -> None:
        if not hmac.compare_digest(given.upper(), expected):
            raise SrsError("SRS hash does not match (forged or from another server)")


def is_srs(local_part: str) -> bool:
    return local_part[:5].upper() in ("SRS0=", "SRS1=")


def load_secret(path: Path, what: str = "SRS secret") -> bytes:
    """The SRS key (or another HMAC key: a webhook's), made (32 random bytes, mode 0600)
    the first time; every process of the daemon reads the same file, whichever creates it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(os.urandom(32).hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
    text = path.read_text().strip()
    if len(text) < 32:
        raise ValueError(f"{path}: the {what} is too short (at least 32 characters)")
    return text.encode()
