"""What TLS an outbound connection needs: the domain policy combined with MTA-STS.

:func:`tls_requirement` folds the configured ``use_starttls`` / ``require_starttls`` /
``tls_verify`` keys and an optional MTA-STS policy (RFC 8461) into one
:class:`TlsRequirement`, which :meth:`SmtpSession.connect` enforces and whose
``mx_patterns`` the caller checks with :func:`mx_allowed` before connecting.

Reply codes for failures (RFC 3463, as Postfix uses them): ``4.7.4`` "security
features not supported" when TLS is required but the server offers no STARTTLS,
``4.7.5`` "cryptographic failure" when the handshake or certificate verification
fails or an MX host is not allowed by an enforced MTA-STS policy. All are 4xx:
the message is deferred and bounces only at expiry.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from outrider.message.domains import domain_key
from outrider.smtp.replies import Reply

if TYPE_CHECKING:
    from outrider.delivery.mta_sts import StsPolicy

__all__ = [
    "TlsMode",
    "TlsRequirement",
    "TlsVerify",
    "client_context",
    "mx_allowed",
    "mx_refused_reply",
    "tls_requirement",
]

log = logging.getLogger("outrider.delivery.tls")

TlsMode = Literal["none", "opportunistic", "required"]
TlsVerify = Literal["none", "ca", "ca+hostname"]

_VERIFY_LEVELS: tuple[TlsVerify, ...] = ("none", "ca", "ca+hostname")


@dataclass(frozen=True, slots=True)
class TlsRequirement:
    """TLS needed for one destination.

    ``mx_patterns`` come from an *enforced* MTA-STS policy: an MX host matching none
    of them must not be used. ``testing_mx_patterns`` come from a *testing* policy:
    a mismatch is only logged (RFC 8461 5).
    """

    mode: TlsMode
    verify: TlsVerify
    ca_file: Path | None = None
    mx_patterns: tuple[str, ...] = ()
    source: str = "policy"  # "policy", "mta-sts", "mta-sts-testing": for logs
    testing_mx_patterns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("none", "opportunistic", "required"):
            raise ValueError(f"invalid TLS mode {self.mode!r}")
        if self.verify not in _VERIFY_LEVELS:
            raise ValueError(f"invalid TLS verification level {self.verify!r}")

    @property
    def required(self) -> bool:
        return self.mode == "required"

    def fallback(self) -> TlsRequirement | None:
        """What to retry with after a TLS failure (``SmtpConnectError.tls_failure``).

        Required TLS has no fallback (defer). Opportunistic TLS steps down to
        unverified TLS, then to clear text, as Postfix's "may" level does.
        """
        if self.mode != "opportunistic":
            return None
        if self.verify != "none":
            return replace(self, verify="none", ca_file=None)
        return replace(self, mode="none")

    def permits_mx(self, host: str) -> bool:
        """Whether ``host`` may be used; logs testing-mode mismatches, which still pass."""
        if self.mx_patterns and not mx_allowed(host, self.mx_patterns):
            log.warning(
                "MTA-STS: MX host %s not in the enforced policy (%s): skipped",
                host,
                ", ".join(self.mx_patterns),
            )
            return False
        if self.testing_mx_patterns and not mx_allowed(host, self.testing_mx_patterns):
            log.warning(
                "MTA-STS testing: MX host %s not in the policy (%s); delivering anyway",
                host,
                ", ".join(self.testing_mx_patterns),
            )
        return True


def tls_requirement(
    *,
    use_starttls: bool,
    require_starttls: bool,
    tls_verify: TlsVerify,
    tls_ca_file: Path | None,
    sts: StsPolicy | None,
) -> TlsRequirement:
    """Combine the domain policy with an MTA-STS policy (pass ``None`` when disabled).

    - MTA-STS ``enforce`` wins over the domain policy: TLS required, certificate
      verified against the CA and the MX host name, MX hosts restricted.
    - ``require_starttls``: TLS mandatory, checked at the ``tls_verify`` level.
    - Otherwise ``use_starttls`` gives opportunistic TLS (RFC 7435), still checked
      at the ``tls_verify`` level; when that check or the handshake fails the caller
      steps down with :meth:`TlsRequirement.fallback`.
    - MTA-STS ``testing`` keeps the domain policy and only logs MX mismatches;
      ``none`` is ignored.
    """
    if tls_verify not in _VERIFY_LEVELS:
        raise ValueError(f"invalid TLS verification level {tls_verify!r}")
    if sts is not None and sts.mode == "enforce":
        return TlsRequirement(
            "required", "ca+hostname", tls_ca_file, tuple(sts.mx), source="mta-sts"
        )
    testing = tuple(sts.mx) if sts is not None and sts.mode == "testing" else ()
    source = "mta-sts-testing" if testing else "policy"
    mode: TlsMode = "required" if require_starttls else "opportunistic" if use_starttls else "none"
    verify: TlsVerify = tls_verify if mode != "none" else "none"
    ca_file = tls_ca_file if verify != "none" else None
    return TlsRequirement(mode, verify, ca_file, source=source, testing_mx_patterns=testing)


def mx_allowed(host: str, patterns: Sequence[str]) -> bool:
    """RFC 8461 4.1: exact match, or ``*.example.com`` covering exactly one more label."""
    name = domain_key(host)
    for pattern in patterns:
        if pattern.startswith("*."):
            dot = name.find(".")
            if dot > 0 and name[dot + 1 :] == domain_key(pattern[2:]):
                return True
        elif name == domain_key(pattern):
            return True
    return False


def mx_refused_reply(host: str) -> Reply:
    """The deferral reason for an MX host an enforced MTA-STS policy does not list."""
    return Reply(451, "4.7.5", f"MX host {host} is not allowed by the MTA-STS policy")


_contexts: dict[tuple[TlsVerify, str | None, int], ssl.SSLContext] = {}


def client_context(req: TlsRequirement) -> ssl.SSLContext:
    """Client context for ``req``'s verification level, TLS 1.2 or later.

    Cached per (level, CA file, CA file mtime): building a context and loading a CA
    bundle costs milliseconds, too much per connection; a replaced CA file is
    picked up at the next connection. Raises ``OSError``/``ssl.SSLError`` when the
    CA file cannot be loaded.
    """
    ca = str(req.ca_file) if req.ca_file is not None and req.verify != "none" else None
    mtime = os.stat(ca).st_mtime_ns if ca is not None else 0
    key = (req.verify, ca, mtime)
    ctx = _contexts.get(key)
    if ctx is None:
        ctx = _build_context(req.verify, ca)
        if ca is not None:
            for old in [k for k in _contexts if k[:2] == key[:2]]:
                del _contexts[old]  # superseded CA file version
        _contexts[key] = ctx
    return ctx


def _build_context(verify: TlsVerify, ca_file: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify == "none":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.check_hostname = verify == "ca+hostname"
    ctx.verify_mode = ssl.CERT_REQUIRED
    if ca_file is not None:
        ctx.load_verify_locations(cafile=ca_file)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return ctx
