"""MTA-STS (RFC 8461): discover, fetch, validate and cache a recipient domain's policy.

Discovery is a ``_mta-sts.<domain>`` TXT lookup through the configured name servers
(never the system resolver when some are configured); a new ``id`` triggers an
HTTPS fetch of ``https://mta-sts.<domain>/.well-known/mta-sts.txt``. The policy host
is resolved with the same resolver and the connection goes to its address with
``mta-sts.<domain>`` for SNI and certificate verification, so no lookup escapes to
the system resolver. The HTTP client is deliberately minimal (one GET, no
redirects per RFC 8461 3.3, 64 KiB cap, one overall timeout): policies are tiny
and fetched rarely.

Cache rules (RFC 8461 5.1): a policy is used until ``max_age`` runs out, even if
its TXT record disappears or a refresh fails; the TXT answer is rechecked after
its TTL and a changed ``id`` refetches. Missing TXT records are remembered for
``negative_ttl``, failed fetches for ``failure_ttl``. Concurrent lookups of one
domain share one refresh. With ``cache_dir`` policies survive restarts (one JSON
file per domain, replaced atomically).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.resolver

from outrider.delivery.dns import DnsError, build_resolver, normalize_domain

__all__ = [
    "MAX_POLICY_BYTES",
    "MAX_POLICY_MAX_AGE",
    "MtaStsResolver",
    "StsMode",
    "StsPolicy",
    "StsPolicyError",
    "parse_policy",
    "parse_txt_record",
]

log = logging.getLogger("outrider.delivery.mta_sts")

StsMode = Literal["enforce", "testing", "none"]

MAX_POLICY_MAX_AGE = 31557600  # RFC 8461 3.2: about one year
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.3 says to limit it; 64 KiB is ample
_MAX_HEADER_BYTES = 16 * 1024
_MAX_TXT_TTL = 3600.0
_WELL_KNOWN = "/.well-known/mta-sts.txt"
_MODES: dict[str, StsMode] = {"enforce": "enforce", "testing": "testing", "none": "none"}

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_MX_RE = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_TXT_ID_RE = re.compile(r"id=([A-Za-z0-9]{1,32})")
_TXT_EXT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}=[\x21-\x3a\x3c\x3e-\x7e]+")
_FILE_SAFE_RE = re.compile(r"[a-z0-9_-][a-z0-9_.-]*")
_WSP = " \t"
_SINGLE_HEADERS = frozenset({"content-length", "content-type", "transfer-encoding"})


class StsPolicyError(ValueError):
    """A TXT record or policy file that does not follow RFC 8461 3.1/3.2."""


@dataclass(frozen=True, slots=True)
class StsPolicy:
    mode: StsMode
    mx: tuple[str, ...]  # lower-case patterns, "*." prefix allowed
    max_age: int  # seconds
    id: str  # the TXT record id this policy was fetched for
    fetched_at: float  # wall-clock time (persisted across restarts)

    @property
    def expires_at(self) -> float:
        return self.fetched_at + self.max_age

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "mx": list(self.mx),
            "max_age": self.max_age,
            "id": self.id,
            "fetched_at": self.fetched_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> StsPolicy:
        """Rebuild a persisted policy, re-validating every field."""
        if not isinstance(data, dict):
            raise StsPolicyError("cached policy is not an object")
        mode, mx, max_age = data.get("mode"), data.get("mx"), data.get("max_age")
        policy_id, fetched_at = data.get("id"), data.get("fetched_at")
        if (
            mode not in _MODES
            or not isinstance(mx, list)
            or not all(isinstance(p, str) and _MX_RE.fullmatch(p) for p in mx)
            or not isinstance(max_age, int)
            or not 0 <= max_age <= MAX_POLICY_MAX_AGE
            or not isinstance(policy_id, str)
            or not _TXT_ID_RE.fullmatch(f"id={policy_id}")
            or not isinstance(fetched_at, int | float)
        ):
            raise StsPolicyError("cached policy has invalid fields")
        if mode != "none" and not mx:
            raise StsPolicyError("cached policy has no mx")
        return cls(_MODES[mode], tuple(p.lower() for p in mx), max_age, policy_id, fetched_at)


def parse_txt_record(records: Sequence[str]) -> str:
    """The policy id from the ``_mta-sts`` TXT answer (RFC 8461 3.1).

    Records not starting with ``v=STSv1`` are discarded; anything but exactly one
    remaining, syntactically valid record raises :class:`StsPolicyError`.
    """
    candidates = [r for r in records if r.startswith("v=STSv1") and r[7:8] in (";", " ", "\t")]
    if len(candidates) != 1:
        raise StsPolicyError(f"{len(candidates)} v=STSv1 TXT records (need exactly one)")
    fields = candidates[0].split(";")
    if fields[0].rstrip(_WSP) != "v=STSv1" or len(fields) < 2:
        raise StsPolicyError("TXT record does not start with v=STSv1;")
    if fields[-1].strip(_WSP) == "":
        fields.pop()  # optional trailing delimiter
    ids: list[str] = []
    for raw in fields[1:]:
        field = raw.strip(_WSP)
        match = _TXT_ID_RE.fullmatch(field)
        if match is not None:
            ids.append(match.group(1))
        elif not _TXT_EXT_RE.fullmatch(field):
            raise StsPolicyError(f"invalid TXT record field {field!r}")
    if len(ids) != 1:
        raise StsPolicyError(f"{len(ids)} id fields in TXT record (need exactly one)")
    return ids[0]


def parse_policy(text: str, *, policy_id: str, fetched_at: float) -> StsPolicy:
    """Parse a policy file strictly per RFC 8461 3.2; raises :class:`StsPolicyError`.

    Lines end in LF or CRLF; keys are matched case-insensitively (ABNF strings).
    ``version``, ``mode`` and ``max_age`` must appear exactly once, ``mx`` at least
    once unless the mode is ``none``; unknown keys are ignored. Empty lines are
    tolerated (published policies often end with one).
    """
    version: list[str] = []
    modes: list[str] = []
    max_ages: list[str] = []
    mx: list[str] = []
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        line = line.rstrip(_WSP)
        if not line:
            continue
        key, colon, value = line.partition(":")
        if not colon or not _KEY_RE.fullmatch(key):
            raise StsPolicyError(f"invalid policy line {line!r}")
        value = value.lstrip(_WSP)
        if not value:
            raise StsPolicyError(f"empty value in policy line {line!r}")
        name = key.lower()
        if name == "version":
            version.append(value)
        elif name == "mode":
            modes.append(value)
        elif name == "max_age":
            max_ages.append(value)
        elif name == "mx":
            if not _MX_RE.fullmatch(value):
                raise StsPolicyError(f"invalid mx pattern {value!r}")
            mx.append(value.lower())
    if len(version) != 1 or version[0].lower() != "stsv1":
        raise StsPolicyError("policy needs exactly one 'version: STSv1'")
    if len(modes) != 1 or modes[0].lower() not in _MODES:
        raise StsPolicyError("policy needs exactly one mode: enforce, testing or none")
    if len(max_ages) != 1:
        raise StsPolicyError("policy needs exactly one max_age")
    age = max_ages[0]
    if not (age.isascii() and age.isdigit() and len(age) <= 10):
        raise StsPolicyError(f"invalid max_age {age!r}")
    if int(age) > MAX_POLICY_MAX_AGE:
        raise StsPolicyError(f"max_age {age} exceeds {MAX_POLICY_MAX_AGE}")
    mode = _MODES[modes[0].lower()]
    if mode != "none" and not mx:
        raise StsPolicyError(f"mode {mode} needs at least one mx line")
    return StsPolicy(mode, tuple(dict.fromkeys(mx)), int(age), policy_id, fetched_at)


class _FetchError(Exception):
    """Why a policy could not be fetched; logged, then treated as "no new policy"."""


@dataclass(frozen=True, slots=True)
class _Txt:
    kind: Literal["ok", "none", "tempfail"]
    policy_id: str = ""
    ttl: float = 0.0
    detail: str = ""


@dataclass(slots=True)
class _DomainState:
    policy: StsPolicy | None = None  # last valid policy (checked for expiry on use)
    checked_until: float = 0.0  # no TXT lookup before this time
    loaded: bool = False  # disk cache consulted

    def current(self, now: float) -> StsPolicy | None:
        policy = self.policy
        return policy if policy is not None and policy.expires_at > now else None


class MtaStsResolver:
    """Per-domain MTA-STS policies; one instance is shared by all deliveries.

    ``nameservers`` takes the same forms as :class:`~outrider.delivery.dns.MxResolver`
    (``None``: the system resolver). ``https_port`` exists for tests; ``ca_file``
    replaces the system CA store for the policy host's certificate.
    """

    def __init__(
        self,
        *,
        nameservers: Sequence[str | tuple[str, int]] | None,
        https_port: int = 443,
        ca_file: Path | None = None,
        fetch_timeout: float = 10.0,
        cache_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        dns_timeout: float = 5.0,
        negative_ttl: float = 300.0,
        failure_ttl: float = 300.0,
        tempfail_ttl: float = 30.0,
    ) -> None:
        resolver = build_resolver(nameservers, timeout=dns_timeout, lifetime=dns_timeout * 2)
        self._resolver = resolver
        self._https_port = https_port
        self._fetch_timeout = fetch_timeout
        self._cache_dir = cache_dir
        self._clock = clock
        self._negative_ttl = negative_ttl
        self._failure_ttl = failure_ttl
        self._tempfail_ttl = tempfail_ttl
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ssl = ctx
        self._states: dict[str, _DomainState] = {}
        self._inflight: dict[str, asyncio.Task[StsPolicy | None]] = {}

    async def policy_for(self, domain: str) -> StsPolicy | None:
        """The domain's valid policy (any mode), or None if it has none."""
        if domain.startswith("["):
            return None  # address literal: no MX, no MTA-STS
        try:
            name = normalize_domain(domain)
        except DnsError:
            return None
        state = self._states.get(name)
        if state is not None and self._clock() < state.checked_until:
            return state.current(self._clock())
        loop = asyncio.get_running_loop()
        task = self._inflight.get(name)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._refresh(name))
            self._inflight[name] = task
            task.add_done_callback(partial(self._refresh_done, name))
        # shield: one caller giving up must not cancel the refresh the others await
        return await asyncio.shield(task)

    def _refresh_done(self, name: str, task: asyncio.Task[StsPolicy | None]) -> None:
        if self._inflight.get(name) is task:
            del self._inflight[name]
        if not task.cancelled() and task.exception() is not None:
            log.error("MTA-STS refresh for %s failed", name, exc_info=task.exception())

    # -- refresh ----------------------------------------------------------------------

    async def _refresh(self, name: str) -> StsPolicy | None:
        state = self._states.setdefault(name, _DomainState())
        if not state.loaded:
            state.loaded = True
            if state.policy is None:
                state.policy = await self._load(name)
        txt = await self._lookup_txt(name)
        now = self._clock()
        valid = state.current(now)
        if txt.kind == "ok":
            if valid is not None and valid.id == txt.policy_id:
                state.checked_until = min(now + txt.ttl, valid.expires_at)
                return valid
            try:
                policy = await self._fetch(name, txt.policy_id)
            except _FetchError as exc:
                log.warning("MTA-STS policy for %s not fetched: %s", name, exc)
                state.checked_until = self._until(now, self._failure_ttl, valid)
                return valid
            now = self._clock()
            state.policy = policy
            state.checked_until = self._until(now, txt.ttl, policy)
            log.info(
                "MTA-STS policy for %s: mode %s, mx %s, max_age %d, id %s",
                name,
                policy.mode,
                ", ".join(policy.mx) or "-",
                policy.max_age,
                policy.id,
            )
            await self._store(name, policy)
            return state.current(now)
        if txt.kind == "tempfail":
            log.info("MTA-STS TXT lookup for %s failed: %s", name, txt.detail)
            state.checked_until = self._until(now, self._tempfail_ttl, valid)
        else:
            if txt.detail:
                log.info("MTA-STS TXT record for %s ignored: %s", name, txt.detail)
            state.checked_until = self._until(now, self._negative_ttl, valid)
        return valid

    @staticmethod
    def _until(now: float, ttl: float, policy: StsPolicy | None) -> float:
        until = now + ttl
        return min(until, policy.expires_at) if policy is not None else until

    # -- DNS ----------------------------------------------------------------------------

    async def _lookup_txt(self, name: str) -> _Txt:
        try:
            answer = await self._resolver.resolve(
                dns.name.from_text(f"_mta-sts.{name}."),
                dns.rdatatype.TXT,
                raise_on_no_answer=False,
                search=False,
            )
        except dns.resolver.NXDOMAIN:
            return _Txt("none")
        except (dns.exception.DNSException, OSError) as exc:
            return _Txt("tempfail", detail=str(exc) or type(exc).__name__)
        if answer.rrset is None:
            return _Txt("none")
        records = [
            b"".join(rd.strings).decode("ascii", "replace")
            for rd in answer.rrset
            if isinstance(rd, dns.rdtypes.ANY.TXT.TXT)
        ]
        try:
            policy_id = parse_txt_record(records)
        except StsPolicyError as exc:
            # RFC 8461 3.1: treat as "no policy available" for discovery
            return _Txt("none", detail=str(exc))
        ttl = min(float(answer.rrset.ttl), _MAX_TXT_TTL)
        return _Txt("ok", policy_id, ttl)

    async def _addresses(self, host: str) -> list[str]:
        qname = dns.name.from_text(host + ".")
        found: list[str] = []
        errors: list[str] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            try:
                answer = await self._resolver.resolve(
                    qname, rdtype, raise_on_no_answer=False, search=False
                )
            except dns.resolver.NXDOMAIN:
                raise _FetchError(f"{host}: host not found") from None
            except (dns.exception.DNSException, OSError) as exc:
                errors.append(str(exc) or type(exc).__name__)
                continue
            if answer.rrset is not None:
                found.extend(str(rd.address) for rd in answer.rrset)
        if not found:
            raise _FetchError(f"{host}: no address ({'; '.join(errors) or 'no A/AAAA records'})")
        return found

    # -- HTTPS --------------------------------------------------------------------------

    async def _fetch(self, name: str, policy_id: str) -> StsPolicy:
        host = f"mta-sts.{name}"
        try:
            async with asyncio.timeout(self._fetch_timeout):
                addresses = await self._addresses(host)
                body = await self._get_any(host, addresses)
        except TimeoutError:
            raise _FetchError(f"timed out after {self._fetch_timeout:g}s") from None
        try:
            text = body.decode("utf-8")
            return parse_policy(text, policy_id=policy_id, fetched_at=self._clock())
        except (UnicodeDecodeError, StsPolicyError) as exc:
            raise _FetchError(f"invalid policy: {exc}") from None

    async def _get_any(self, host: str, addresses: Sequence[str]) -> bytes:
        """GET from the first address that accepts a TCP connection."""
        failures: list[str] = []
        for address in addresses:
            try:
                return await self._get(host, address)
            except ssl.SSLCertVerificationError as exc:
                raise _FetchError(
                    f"{address}: certificate verify failed: {exc.verify_message}"
                ) from None
            except ssl.SSLError as exc:
                raise _FetchError(f"{address}: TLS failed: {exc}") from None
            except OSError as exc:  # connection refused, unreachable...: next address
                failures.append(f"{address}: {exc.strerror or exc}")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                raise _FetchError(f"{address}: bad HTTP response: {exc}") from None
        raise _FetchError("; ".join(failures))

    async def _get(self, host: str, address: str) -> bytes:
        reader, writer = await asyncio.open_connection(
            address,
            self._https_port,
            ssl=self._ssl,
            server_hostname=host,
            ssl_handshake_timeout=self._fetch_timeout,
            limit=_MAX_HEADER_BYTES,
        )
        try:
            authority = host if self._https_port == 443 else f"{host}:{self._https_port}"
            writer.write(
                f"GET {_WELL_KNOWN} HTTP/1.1\r\nHost: {authority}\r\n"
                "User-Agent: Outrider-MTA-STS\r\nAccept: text/plain\r\n"
                "Connection: close\r\n\r\n".encode("ascii")
            )
            head = await reader.readuntil(b"\r\n\r\n")
            headers = _parse_head(head)
            body = await _read_body(reader, headers)
        except BaseException:
            writer.transport.abort()
            raise
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):  # don't wait long for the peer's close_notify
                await writer.wait_closed()
        if not writer.transport.is_closing():
            writer.transport.abort()
        return body

    # -- persistence ----------------------------------------------------------------------

    def _path(self, name: str) -> Path | None:
        if self._cache_dir is None or not _FILE_SAFE_RE.fullmatch(name):
            return None
        return self._cache_dir / f"{name}.json"

    async def _load(self, name: str) -> StsPolicy | None:
        path = self._path(name)
        if path is None:
            return None
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("MTA-STS cache %s unreadable: %s", path, exc)
            return None
        try:
            policy = StsPolicy.from_json(json.loads(data))
        except (ValueError, StsPolicyError) as exc:
            log.warning("MTA-STS cache %s ignored: %s", path, exc)
            return None
        return policy if policy.expires_at > self._clock() else None

    async def _store(self, name: str, policy: StsPolicy) -> None:
        path = self._path(name)
        if path is None:
            return
        data = json.dumps(policy.to_json(), separators=(",", ":")).encode("utf-8")
        try:
            await asyncio.to_thread(_atomic_write, path, data)
        except OSError as exc:
            log.warning("MTA-STS cache %s not written: %s", path, exc)


def _parse_head(head: bytes) -> dict[str, str]:
    """Status must be 200 (no redirects, RFC 8461 3.3); returns lower-cased headers."""
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise _FetchError(f"malformed HTTP status line {lines[0][:80]!r}")
    if parts[1] != "200":
        raise _FetchError(f"HTTP status {' '.join(parts[1:])[:80]}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, colon, value = line.partition(":")
        if not colon or not key or key != key.strip():
            raise _FetchError(f"malformed HTTP header {line[:80]!r}")
        key, value = key.lower(), value.strip(_WSP)
        if key in _SINGLE_HEADERS and headers.get(key, value) != value:
            raise _FetchError(f"conflicting {key} headers")
        headers[key] = value
    media_type = headers.get("content-type", "").split(";", 1)[0].strip(_WSP).lower()
    if media_type != "text/plain":
        raise _FetchError(f"Content-Type {headers.get('content-type', '(none)')!r}, not text/plain")
    return headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if coding.lower() != "chunked":
            raise _FetchError(f"unsupported Transfer-Encoding {coding!r}")
        return await _read_chunked(reader)
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise _FetchError(f"invalid Content-Length {length!r}")
        if int(length) > MAX_POLICY_BYTES:
            raise _FetchError(f"policy larger than {MAX_POLICY_BYTES} bytes")
        return await reader.readexactly(int(length))
    parts: list[bytes] = []
    size = 0
    while chunk := await reader.read(MAX_POLICY_BYTES + 1):
        size += len(chunk)
        if size > MAX_POLICY_BYTES:
            raise _FetchError(f"policy larger than {MAX_POLICY_BYTES} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        text = line[:-2].split(b";", 1)[0].strip()
        try:
            chunk_size = int(text, 16)
        except ValueError:
            raise _FetchError(f"invalid chunk size {text[:20]!r}") from None
        if chunk_size < 0:
            raise _FetchError("negative chunk size")
        if chunk_size == 0:
            return b"".join(parts)  # trailers are not needed: the connection closes
        size += chunk_size
        if size > MAX_POLICY_BYTES:
            raise _FetchError(f"policy larger than {MAX_POLICY_BYTES} bytes")
        parts.append(await reader.readexactly(chunk_size))
        if await reader.readexactly(2) != b"\r\n":
            raise _FetchError("chunk not terminated by CRLF")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
