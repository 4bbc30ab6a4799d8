"""DKIM private keys: load (checked against the configured algorithm), generate, and the
public half as a DNS TXT record."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

RSA_SHA256 = "rsa-sha256"
ED25519_SHA256 = "ed25519-sha256"
ALGORITHMS = (RSA_SHA256, ED25519_SHA256)
MIN_RSA_BITS = 1024  # RFC 8301: verifiers must refuse less
TXT_CHUNK = 255  # longest character-string in a TXT record

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class DkimKeyError(ValueError):
    """A key file that cannot be used; the message says why."""


def load_private_key(path: Path, algorithm: str) -> PrivateKey:
    """The PEM (PKCS#8 or traditional) private key in ``path``, which must suit
    ``algorithm``. Raises :class:`DkimKeyError` (or :class:`OSError` for an unreadable file)."""
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise DkimKeyError(f"not an unencrypted PEM private key: {exc}") from None
    if algorithm == RSA_SHA256:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DkimKeyError(f"algorithm {algorithm} needs an RSA key, got {_kind(key)}")
        if key.key_size < MIN_RSA_BITS:
            raise DkimKeyError(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} needed")
        return key
    if algorithm == ED25519_SHA256:
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise DkimKeyError(f"algorithm {algorithm} needs an Ed25519 key, got {_kind(key)}")
        return key
    raise DkimKeyError(f"unknown algorithm {algorithm!r}")


def _kind(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "an RSA key"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "an Ed25519 key"
    return f"a {type(key).__name__.removeprefix('_')}"


def generate_key(algorithm: str, bits: int = 2048) -> PrivateKey:
    if algorithm == RSA_SHA256:
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if algorithm == ED25519_SHA256:
        return ed25519.Ed25519PrivateKey.generate()
    raise DkimKeyError(f"unknown algorithm {algorithm!r}")


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private_key(path: Path, key: PrivateKey, *, overwrite: bool = False) -> None:
    """Write the PEM with mode 0600 from the start (never readable by others, even
    briefly); refuses an existing file unless ``overwrite``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, private_pem(key))
    finally:
        os.close(fd)


def public_key_b64(key: PrivateKey) -> str:
    """The ``p=`` value: DER SubjectPublicKeyInfo for RSA, the raw 32 octets for Ed25519
    (RFC 8463 4.2)."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return base64.b64encode(raw).decode("ascii")


def txt_value(key: PrivateKey) -> str:
    """The record's text, ``v=DKIM1; k=…; p=…``."""
    k = "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa"
    return f"v=DKIM1; k={k}; p={public_key_b64(key)}"


def txt_record(domain: str, selector: str, key: PrivateKey) -> str:
    """The zone-file line, the text split into 255-octet strings."""
    text = txt_value(key)
    chunks = [text[i : i + TXT_CHUNK] for i in range(0, len(text), TXT_CHUNK)]
    quoted = " ".join(f'"{c}"' for c in chunks)
    return f"{selector}._domainkey.{domain} IN TXT {quoted}"
