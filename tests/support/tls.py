"""TLS helpers for tests: server contexts with certificates from a trustme test CA."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    """A server-side context presenting a certificate for ``names`` issued by ``ca``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


def write_ca(ca: trustme.CA, path: Path) -> Path:
    """The CA certificate as a PEM file, for ``tls-ca-file`` and similar settings."""
    ca.cert_pem.write_to_path(str(path))
    return path
