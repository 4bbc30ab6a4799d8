"""The DKIM-Signature field: which header fields it covers, and the signature itself.

Pure: the caller gives the header section, the body hash (the body may be hashed
from a file, :mod:`outrider.dkim.canon`), the time and the key.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding

from outrider.dkim.canon import relaxed_header
from outrider.dkim.keys import ED25519_SHA256, PrivateKey

# Signed when present, in this order (RFC 6376 5.4.1's advice plus the bulk-mail headers).
DEFAULT_HEADERS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-id",
    "feedback-id",
)
# Listed once more than present, so another one cannot be added without breaking it.
OVERSIGNED = frozenset({"from", "subject", "list-unsubscribe", "list-unsubscribe-post"})
_FOLD = b"\r\n\t"
_B64_LINE = 72


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One ``[[dkim]]`` entry, key loaded."""

    domain: str  # d=
    selector: str  # s=
    algorithm: str  # a=
    key: PrivateKey
    headers: tuple[str, ...] = DEFAULT_HEADERS  # lower case


def header_fields(head: bytes, *, keep_all: bool = False) -> list[tuple[bytes, bytes]]:
    """(lower-case name, raw field with its CRLF) for each field of a header section;
    with ``keep_all`` a line that is no field is kept too (name ``b""``), so the pieces
    join back into ``head``."""
    fields: list[tuple[bytes, bytes]] = []
    start = 0
    size = len(head)
    while start < size:
        end = head.find(b"\r\n", start)
        while end >= 0 and end + 2 < size and head[end + 2] in b" \t":
            end = head.find(b"\r\n", end + 2)
        end = size if end < 0 else end + 2
        raw = head[start:end]
        colon = raw.find(b":")
        if colon > 0:
            fields.append((raw[:colon].strip(b" \t").lower(), raw))
        elif keep_all:
            fields.append((b"", raw))
        start = end
    return fields


def chosen_headers(
    fields: Sequence[tuple[bytes, bytes]], names: Sequence[str]
) -> tuple[list[str], list[bytes]]:
    """The ``h=`` names and the fields they select, bottom-most instance first (RFC 6376
    5.4.2); over-signed names are listed once more than they occur."""
    by_name: dict[bytes, list[bytes]] = {}
    for field_name, raw in fields:
        by_name.setdefault(field_name, []).append(raw)
    listed: list[str] = []
    signed: list[bytes] = []
    for name in names:
        present = by_name.get(name.encode("ascii"), [])
        if name in OVERSIGNED:
            listed.extend([name] * (len(present) + 1))
        else:
            listed.extend([name] * len(present))
        signed.extend(reversed(present))
    return listed, signed


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def _folded(value: bytes, first: int) -> bytes:
    """``value`` cut into lines (FWS inside b= and bh= is ignored by verifiers)."""
    lines = [value[:first]]
    lines += [value[i : i + _B64_LINE] for i in range(first, len(value), _B64_LINE)]
    return _FOLD.join(line for line in lines if line)


def sign(key: SigningKey, head: bytes, body_hash: bytes, now: int) -> bytes:
    """The DKIM-Signature field (with its CRLF) to prepend to a message whose header
    section is ``head`` and whose relaxed body hash is ``body_hash``."""
    listed, signed = chosen_headers(header_fields(head), key.headers)
    h_tag = b":".join(n.encode("ascii") for n in listed)
    h_lines = _FOLD.join(_wrap_names(h_tag))
    field = (
        b"DKIM-Signature: v=1; a="
        + key.algorithm.encode("ascii")
        + b"; c=relaxed/relaxed;"
        + _FOLD
        + b"d="
        + key.domain.encode("idna")
        + b"; s="
        + key.selector.encode("ascii")
        + b"; t="
        + str(now).encode("ascii")
        + b";"
        + _FOLD
        + b"h="
        + h_lines
        + b";"
        + _FOLD
        + b"bh="
        + _b64(body_hash)
        + b";"
        + _FOLD
        + b"b="
    )
    data = b"".join(relaxed_header(raw) for raw in signed) + relaxed_header(field)[:-2]
    signature = _signature(key, data)
    return field + _folded(_b64(signature), 60) + b"\r\n"


def _wrap_names(h_tag: bytes, width: int = 70) -> list[bytes]:
    lines: list[bytes] = []
    while len(h_tag) > width:
        cut = h_tag.rfind(b":", 0, width) + 1 or len(h_tag)
        lines.append(h_tag[:cut])
        h_tag = h_tag[cut:]
    lines.append(h_tag)
    return [line for line in lines if line]


def _signature(key: SigningKey, data: bytes) -> bytes:
    private = key.key
    if isinstance(private, ed25519.Ed25519PrivateKey):
        assert key.algorithm == ED25519_SHA256
        return private.sign(hashlib.sha256(data).digest())  # RFC 8463 3: sign the hash
    return private.sign(data, padding.PKCS1v15(), hashes.SHA256())
