"""Bearer tokens for the HTTP API: only a SHA-256 of each is stored.

The file (``[http] tokens-file``, mode 0600, rewritten atomically) is JSON::

    {"tokens": [{"name": "grafana", "role": "monitor", "created": "2026-...Z",
                 "sha256": "<hex>"}]}

A token is 256 random bits, so a plain hash is enough (no salt or slow hash needed:
there is nothing to guess). The daemon keeps a :class:`TokenCache` that re-reads the
file when it changes (modification time, size or inode), so a new token works without a reload.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from outrider.http.access import Role

ROLES: tuple[Role, ...] = ("admin", "monitor", "inject")
PREFIX = "otk_"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class TokenError(ValueError):
    """A tokens file that cannot be read or a request that cannot be done; says why."""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    name: str
    role: Role
    created: str
    sha256: str


def new_token() -> str:
    """A fresh bearer token: 256 random bits, URL-safe."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def parse(text: str, where: str = "tokens file") -> list[TokenEntry]:
    """The entries of a tokens file; TokenError naming what is wrong."""
    try:
        data = json.loads(text) if text.strip() else {"tokens": []}
    except json.JSONDecodeError as exc:
        raise TokenError(f"{where}: not JSON ({exc})") from None
    raw = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise TokenError(f"{where}: a JSON object with a 'tokens' list is required")
    entries: list[TokenEntry] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise TokenError(f"{where}: tokens[{i}] is not an object")
        fields = {k: item.get(k) for k in ("name", "role", "created", "sha256")}
        if not all(isinstance(v, str) for v in fields.values()):
            raise TokenError(f"{where}: tokens[{i}] needs name, role, created and sha256 strings")
        if fields["role"] not in ROLES:
            raise TokenError(f"{where}: tokens[{i}]: role must be one of {', '.join(ROLES)}")
        entries.append(TokenEntry(**cast(dict[str, Any], fields)))
    return entries


def load(path: Path) -> list[TokenEntry]:
    """The file's entries; an absent file has none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise TokenError(f"{path}: cannot read: {exc.strerror}") from None
    return parse(text, str(path))


def save(path: Path, entries: list[TokenEntry]) -> None:
    """Write the file atomically (temp file, fsync, rename), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"tokens": [asdict(e) for e in entries]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def add(path: Path, name: str, role: str, now: float | None = None) -> str:
    """Add a token named ``name``; returns the token (shown once, never stored)."""
    if not NAME.fullmatch(name):
        raise TokenError(f"bad token name {name!r}: letters, digits, '.', '_', '@', '-'")
    checked = next((r for r in ROLES if r == role), None)
    if checked is None:
        raise TokenError(f"role must be one of {', '.join(ROLES)}")
    entries = load(path)
    if any(e.name == name for e in entries):
        raise TokenError(f"a token named {name!r} exists: delete it first")
    token = new_token()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    entries.append(TokenEntry(name, checked, created, digest(token)))
    save(path, entries)
    return token


def delete(path: Path, name: str) -> None:
    entries = load(path)
    kept = [e for e in entries if e.name != name]
    if len(kept) == len(entries):
        raise TokenError(f"no token named {name!r}")
    save(path, kept)


def role_of(entries: list[TokenEntry], token: str) -> Role | None:
    """The role of ``token``, comparing hashes in constant time (every entry is compared)."""
    entry = entry_of(entries, token)
    return entry.role if entry is not None else None


def entry_of(entries: list[TokenEntry], token: str) -> TokenEntry | None:
    """The entry of ``token`` (every entry is compared, in constant time each)."""
    wanted = digest(token)
    found: TokenEntry | None = None
    for entry in entries:
        if hmac.compare_digest(entry.sha256, wanted):
            found = entry
    return found


class TokenCache:
    """The daemon's view of the tokens file, re-read when it changes: mtime, size or inode
    (every rewrite is a new inode, so two rewrites within one mtime tick are seen too).

    A file that turns unreadable or invalid keeps no token valid (fail closed) and logs
    once per change through ``on_error``.
    """

    def __init__(self, path: Path, on_error: Any = None) -> None:
        self.path = path
        self.on_error = on_error
        self._stamp: tuple[int, int, int] | None = None
        self._entries: list[TokenEntry] = []

    def role(self, token: str) -> Role | None:
        self._refresh()
        return role_of(self._entries, token)

    def name(self, token: str) -> str | None:
        """The token's name (the API submitter recorded as a message's auth user)."""
        self._refresh()
        entry = entry_of(self._entries, token)
        return entry.name if entry is not None else None

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = (0, -1, 0)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._entries = load(self.path) if stamp[1] >= 0 else []
        except TokenError as exc:
            self._entries = []
            if self.on_error is not None:
                self.on_error(str(exc))
