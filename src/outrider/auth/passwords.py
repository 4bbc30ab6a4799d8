"""Password hashing for the built-in user store: scrypt, optional argon2id, SCRAM keys.

Stored hashes are self-describing strings, so the cost parameters can be raised
later without invalidating existing users:

* ``$scrypt$n=32768,r=8,p=1$<salt>$<hash>`` (salt and hash base64, no padding).
  ``n=2**15, r=8`` needs 32 MiB and takes roughly 50-80 ms on a current server
  core: expensive enough to make offline guessing costly, cheap enough that an
  MTA can verify a burst of logins. ``hashlib.scrypt`` releases the GIL, so the
  SMTP layer can run verification in a thread pool without stalling the loop.
* ``$argon2id$...`` (PHC format from ``argon2-cffi``), only if that package is
  installed; it is not a dependency of Outrider.

SCRAM-SHA-256 cannot use either hash, so ``user add``/``passwd`` also derive
:class:`ScramCredentials` (RFC 5802 StoredKey/ServerKey). Neither form allows the
password to be recovered without guessing it.

Every password is normalised with SASLprep (RFC 4013) before hashing and before
verification, as SCRAM clients do, so all mechanisms agree on non-ASCII input.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import importlib
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_SCRYPT",
    "SCHEMES",
    "SCRAM_ITERATIONS",
    "PasswordError",
    "ScramCredentials",
    "ScryptParams",
    "argon2_available",
    "b64decode_nopad",
    "b64encode_nopad",
    "check_hash",
    "derive_scram_credentials",
    "dummy_verify",
    "hash_password",
    "saslprep",
    "verify_password",
]


class PasswordError(ValueError):
    """A password or stored hash cannot be used; the message is meant for the operator."""


@dataclass(frozen=True, slots=True)
class ScryptParams:
    n: int
    r: int
    p: int

    def maxmem(self) -> int:
        # scrypt needs 128*r*n bytes for V plus 128*r*p for B; leave headroom for OpenSSL.
        return 128 * self.r * (self.n + self.p) + (16 << 20)


DEFAULT_SCRYPT = ScryptParams(n=2**15, r=8, p=1)
_SCRYPT_SALT_BYTES = 16
_SCRYPT_HASH_BYTES = 32
# Refuse stored parameters that would need more than 1 GiB or take absurdly long.
_SCRYPT_MAX_N = 2**20
_SCRYPT_MAX_RP = 64
_SCRYPT_MAX_MEMORY = 1 << 30

# RFC 7677 asks for at least 4096. The stored keys are as exposed to offline
# guessing as any PBKDF2 hash, so go higher; clients pay this once per login.
SCRAM_ITERATIONS = 10_000
SCRAM_MIN_ITERATIONS = 4096
_SCRAM_SALT_BYTES = 16

SCHEMES = ("scrypt", "argon2id")


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What a SCRAM-SHA-256 server keeps per user (RFC 5802 section 3)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


# --------------------------------------------------------------------------- base64


def b64encode_nopad(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode_nopad(text: str) -> bytes:
    """Strict standard base64, padding optional."""
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise PasswordError(f"invalid base64 {text!r}") from exc


# --------------------------------------------------------------------------- SASLprep

_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep for stored strings; raises :class:`PasswordError` if prohibited.

    Printable ASCII, the overwhelmingly common case, maps to itself and skips
    the per-character tables.
    """
    if text.isascii() and text.isprintable():
        return text
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    normalized = unicodedata.normalize("NFKC", mapped)
    if not normalized:
        return normalized
    for ch in normalized:
        if any(check(ch) for check in _PROHIBITED):
            raise PasswordError(f"prohibited character U+{ord(ch):04X}")
        if stringprep.in_table_a1(ch):
            raise PasswordError(f"unassigned character U+{ord(ch):04X}")
    if any(stringprep.in_table_d1(ch) for ch in normalized) and (
        any(stringprep.in_table_d2(ch) for ch in normalized)
        or not stringprep.in_table_d1(normalized[0])
        or not stringprep.in_table_d1(normalized[-1])
    ):
        raise PasswordError("mixes right-to-left and left-to-right text")
    return normalized


# --------------------------------------------------------------------------- argon2


def argon2_available() -> bool:
    return _argon2_module() is not None


@functools.cache
def _argon2_module() -> Any:
    try:
        return importlib.import_module("argon2")
    except ImportError:
        return None


def _argon2_hasher() -> Any:
    module = _argon2_module()
    if module is None:
        raise PasswordError(
            "argon2id needs the 'argon2-cffi' package, which is not installed; "
            "install it or use the default scheme 'scrypt'"
        )
    return module.PasswordHasher()


# --------------------------------------------------------------------------- hashing


def hash_password(
    password: str, *, scheme: str = "scrypt", params: ScryptParams | None = None
) -> str:
    """Return the storable hash of ``password`` (SASLprep-normalised first)."""
    if not password:
        raise PasswordError("password must not be empty")
    prepared = saslprep(password)
    if not prepared:
        raise PasswordError("password is empty after SASLprep normalisation")
    if scheme == "scrypt":
        p = params if params is not None else DEFAULT_SCRYPT
        _check_scrypt(p)
        salt = secrets.token_bytes(_SCRYPT_SALT_BYTES)
        digest = _scrypt(prepared, salt, p)
        return f"$scrypt$n={p.n},r={p.r},p={p.p}${b64encode_nopad(salt)}${b64encode_nopad(digest)}"
    if scheme == "argon2id":
        encoded: str = _argon2_hasher().hash(prepared)
        return encoded
    raise PasswordError(f"unknown password scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against a stored hash.

    Raises :class:`PasswordError` only when the stored hash itself is unusable
    (malformed, or argon2id without ``argon2-cffi``); a wrong or un-preparable
    password is simply ``False``.
    """
    if encoded.startswith("$scrypt$"):
        params, salt, expected = _parse_scrypt(encoded)
        try:
            prepared = saslprep(password)
        except PasswordError:
            _scrypt("", salt, params)  # same cost as a real attempt
            return False
        return hmac.compare_digest(_scrypt(prepared, salt, params), expected)
    if encoded.startswith("$argon2id$"):
        hasher = _argon2_hasher()
        errors = _argon2_module().exceptions
        invalid = getattr(errors, "InvalidHashError", None) or errors.InvalidHash
        try:
            prepared = saslprep(password)
        except PasswordError:
            prepared = ""
        try:
            matched = bool(hasher.verify(encoded, prepared))
        except errors.VerificationError:
            return False
        except invalid as exc:
            raise PasswordError(f"malformed argon2id hash: {exc}") from None
        return matched and bool(prepared)
    raise PasswordError("unknown password hash format (expected $scrypt$ or $argon2id$)")


def check_hash(encoded: str) -> None:
    """Raise :class:`PasswordError` if ``encoded`` is not a usable stored hash."""
    if encoded.startswith("$scrypt$"):
        _parse_scrypt(encoded)
    elif encoded.startswith("$argon2id$"):
        if not argon2_available():
            raise PasswordError("argon2id hash found but 'argon2-cffi' is not installed")
    else:
        raise PasswordError("unknown password hash format (expected $scrypt$ or $argon2id$)")


@functools.cache
def _dummy_hash(params: ScryptParams) -> str:
    return hash_password(secrets.token_urlsafe(16), params=params)


def dummy_verify(password: str) -> bool:
    """Spend what verifying a real user costs, so unknown names are not revealed by timing."""
    verify_password(password, _dummy_hash(DEFAULT_SCRYPT))
    return False


def _scrypt(prepared: str, salt: bytes, params: ScryptParams) -> bytes:
    return hashlib.scrypt(
        prepared.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=params.maxmem(),
        dklen=_SCRYPT_HASH_BYTES,
    )


def _check_scrypt(params: ScryptParams) -> None:
    n, r, p = params.n, params.r, params.p
    if n < 2 or n > _SCRYPT_MAX_N or n & (n - 1):
        raise PasswordError(f"scrypt n must be a power of two between 2 and {_SCRYPT_MAX_N}")
    if not (1 <= r <= _SCRYPT_MAX_RP and 1 <= p <= _SCRYPT_MAX_RP):
        raise PasswordError(f"scrypt r and p must be between 1 and {_SCRYPT_MAX_RP}")
    if 128 * r * n > _SCRYPT_MAX_MEMORY:
        raise PasswordError("scrypt parameters need more than 1 GiB (128 * r * n)")


def _parse_scrypt(encoded: str) -> tuple[ScryptParams, bytes, bytes]:
    parts = encoded.split("$")
    # ["", "scrypt", "n=..,r=..,p=..", salt, hash]
    if len(parts) != 5:
        raise PasswordError("malformed scrypt hash: expected $scrypt$n=N,r=R,p=P$SALT$HASH")
    fields: dict[str, int] = {}
    for item in parts[2].split(","):
        key, sep, value = item.partition("=")
        if not sep or key not in ("n", "r", "p") or key in fields or not value.isdigit():
            raise PasswordError(f"malformed scrypt parameters {parts[2]!r}")
        fields[key] = int(value)
    if len(fields) != 3:
        raise PasswordError(f"malformed scrypt parameters {parts[2]!r}")
    params = ScryptParams(n=fields["n"], r=fields["r"], p=fields["p"])
    _check_scrypt(params)
    salt = b64decode_nopad(parts[3])
    digest = b64decode_nopad(parts[4])
    if not salt or len(digest) < 16:
        raise PasswordError("malformed scrypt hash: salt or hash too short")
    return params, salt, digest


# --------------------------------------------------------------------------- SCRAM


def derive_scram_credentials(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> ScramCredentials:
    """RFC 5802: SaltedPassword = Hi(SASLprep(password)), then StoredKey and ServerKey."""
    if iterations < SCRAM_MIN_ITERATIONS:
        raise PasswordError(f"SCRAM iterations must be at least {SCRAM_MIN_ITERATIONS}")
    prepared = saslprep(password)
    if not prepared:
        raise PasswordError("password must not be empty")
    if salt is None:
        salt = secrets.token_bytes(_SCRAM_SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", prepared.encode("utf-8"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return ScramCredentials(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", "sha256"),
    )
