"""Kinds of the ``[[webhook]]`` keys: the URL, the event kinds and the extra headers."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from outrider.config.kinds import Invalid, Kind, array, choice, kind, type_name
from outrider.config.locator import KeyPath

# The kinds a webhook can be sent, in the order docs/webhooks.md describes them.
WEBHOOK_EVENTS = (
    "delivered",
    "bounced",
    "deferred",
    "expired",
    "suppressed",
    "complained",
    "unsubscribed",
    "backoff",
    "backoff-end",
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP field name (RFC 9110)
_RESERVED = frozenset({"content-type", "content-length", "host", "transfer-encoding"})


def _url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {text!r}")
    if any(c <= " " or c == "\x7f" for c in text.strip()):
        raise ValueError(f"must not contain spaces or control characters, got {text!r}")
    return text.strip()


def _headers(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise Invalid([((), f"expected a table of name = value, got {type_name(value)}")])
    out: list[tuple[str, str]] = []
    problems: list[tuple[KeyPath, str]] = []
    for name, text in value.items():
        if not _TOKEN.fullmatch(name):
            problems.append(((name,), f"{name!r} is not an HTTP header name"))
        elif name.lower() in _RESERVED or name.lower().startswith("x-outrider-"):
            problems.append(((name,), f"{name!r} is set by outrider itself"))
        elif not isinstance(text, str):
            problems.append(((name,), f"expected a string, got {type_name(text)}"))
        elif any((c < " " and c != "\t") or c == "\x7f" for c in text):
            problems.append(((name,), "must not contain control characters"))
        else:
            out.append((name, text))
    if problems:
        raise Invalid(problems)
    return tuple(out)


URL = kind("http(s) URL", {"type": "string", "pattern": "^https?://"}, _url)
HEADERS = Kind(
    _headers,
    "table of header = value",
    {"type": "object", "additionalProperties": {"type": "string"}},
)
EVENTS: Any = array(choice(WEBHOOK_EVENTS), "event kinds", non_empty=True)
