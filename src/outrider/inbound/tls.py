"""Server-side TLS: SSL contexts for STARTTLS and implicit-TLS listeners, and a
self-signed certificate for development (``outrider gen-cert``, ``make run``).

A context is built from the certificate and key files every time the listener
configuration is (re)built, so SIGHUP picks up a renewed certificate; a file that
fails to load keeps the previous context (see :func:`outrider.runtime.listeners`).

Protocols are TLS 1.2 and newer (``tls-min-version`` may raise it to 1.3). TLS 1.2
cipher suites are the forward-secret AEAD ones of Mozilla's "intermediate" profile;
TLS 1.3 suites are OpenSSL's defaults (all AEAD). Compression and renegotiation are
off; session tickets stay on (resumption saves a full handshake per connection for
busy peers).

An implicit-TLS listener's socket does the handshake itself (see
:class:`outrider.inbound.receiver.Listener`), so its SSL context is fixed when it
starts listening; :func:`follow_current` makes each handshake switch to the listener's
current context, so a reloaded certificate needs no restart there either.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "TLS12_CIPHERS",
    "TlsError",
    "follow_current",
    "generate_self_signed",
    "server_context",
]

TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
    )
)

_MIN_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class TlsError(Exception):
    """A certificate or key could not be loaded; the message names the files."""


def server_context(cert: Path, key: Path, *, min_version: str = "TLSv1.2") -> ssl.SSLContext:
    """A server context with ``cert`` (PEM chain, leaf first) and ``key`` loaded."""
    version = _MIN_VERSIONS.get(min_version)
    if version is None:
        raise TlsError(f"unsupported tls-min-version {min_version!r}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = version
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.verify_mode = ssl.CERT_NONE  # SMTP servers do not ask clients for certificates
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TlsError(f"cannot load TLS certificate {cert} / key {key}: {reason}") from exc
    return ctx


def follow_current(front: ssl.SSLContext, current: Callable[[], ssl.SSLContext | None]) -> None:
    """Make every handshake on ``front`` present ``current()``'s certificate and key.

    OpenSSL calls the SNI callback for every ClientHello, with or without a server
    name; switching the connection's context there swaps the certificate chain and key
    (``SSL_set_SSL_CTX``). Protocol versions, cipher suites and options stay those of
    ``front``: whoever changes ``current()`` keeps ``front.minimum_version`` in step
    (the rest is the same for every context :func:`server_context` builds).
    """

    def select(conn: ssl.SSLSocket | ssl.SSLObject, server_name: str | None, _: object) -> None:
        ctx = current()
        if ctx is not None and ctx is not conn.context:
            conn.context = ctx

    front.sni_callback = select


def generate_self_signed(
    cert_path: Path, key_path: Path, hostname: str, *, days: int = 825, overwrite: bool = False
) -> bool:
    """Write a self-signed certificate for ``hostname`` (EC P-256, SAN = hostname).

    Returns False without touching anything when both files exist and ``overwrite``
    is false, so ``make run`` keeps the certificate it made last time. The key is
    created with mode 0600.
    """
    if not overwrite and cert_path.exists() and key_path.exists():
        return False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        san = x509.DNSName(hostname)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for path in (cert_path, key_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(key_path, key_pem)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return True


def _write_private(path: Path, data: bytes) -> None:
    _write_atomic(path, data, 0o600)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
