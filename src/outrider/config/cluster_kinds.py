"""Kinds of the ``[cluster]`` keys: the Redis URL and the node name."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from outrider.config.kinds import kind

_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _redis_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"expected redis://HOST[:PORT][/DB] or rediss://..., got {text!r}")
    try:
        parts.port  # noqa: B018 (raises for a bad port)
    except ValueError as exc:
        raise ValueError(f"bad port in {text!r}: {exc}") from None
    if parts.password:
        raise ValueError("put the password in password-file, not in the URL")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"the database must be a number, got {db!r}")
    return text.strip()


def _node(text: str) -> str:
    if not _NODE.fullmatch(text):
        raise ValueError(f"expected letters, digits, '.', '_' or '-' (up to 100), got {text!r}")
    return text


REDIS_URL = kind("redis:// URL", {"type": "string", "pattern": "^rediss?://"}, _redis_url)
NODE_NAME = kind("node name", {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$"}, _node)
