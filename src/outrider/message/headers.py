"""Header helpers for the receiving path: trace header, header lookup and removal.

These run once per accepted message, so they work on raw bytes with C-level searches
(``bytes.find``/``lower``) instead of parsing the message with the ``email`` package.
Messages are expected in SMTP wire form: CRLF line endings, header block ended by an
empty line. Only the header block is ever searched or changed; the body is left
byte-for-byte intact even when it contains header look-alikes.
"""

from __future__ import annotations

import re
import time

_CRLF = b"\r\n"
_BLANK_LINE = b"\r\n\r\n"
_WSP = b" \t"

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Characters that would break the structure of a Received field if a client put them in
# its HELO argument or address: controls (CR/LF above all), and the comment/clause
# delimiters. Replaced, not dropped, so the oddity stays visible.
_UNSAFE_TOKEN = re.compile(r"[\x00-\x20\x7f();<>\\\"]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


def rfc5322_date(now: float) -> str:
    """``Thu, 27 Nov 2026 20:31:05 +0000``: locale-independent, always UTC."""
    t = time.gmtime(now)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def _address_literal(ip: str) -> str:
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


def received_header(
    *,
    helo: str,
    client_ip: str,
    client_rdns: str | None,
    by_host: str,
    protocol: str,
    queue_id: str,
    recipient: str | None,
    now: float,
) -> bytes:
    """The RFC 5321 section 4.4 trace field, folded one clause per line, ending in CRLF.

    ``recipient`` should only be given for single-recipient messages: naming one of
    several recipients would disclose it to the others. Client-supplied text (HELO,
    recipient) is sanitised so it cannot break out of its clause or inject a line.
    """
    by = f"by {by_host} (Outrider) with {protocol} id {queue_id}"
    if not client_ip and not helo:  # made here (a DSN): no client to name
        lines = [f"Received: {by}"]
    else:
        literal = _address_literal(client_ip)
        tcp_info = f"{client_rdns} {literal}" if client_rdns else literal
        from_domain = _UNSAFE_TOKEN.sub("_", helo) if helo else literal
        lines = [f"Received: from {from_domain} ({tcp_info})", f"\t{by}"]
    date = rfc5322_date(now)
    if recipient:
        lines.append(f"\tfor <{_CONTROLS.sub('_', recipient)}>; {date}")
    else:
        lines.append(f"\t; {date}")
    text = "\r\n".join(lines) + "\r\n"
    # Non-ASCII can only legitimately appear when the session is SMTPUTF8 (RFC 6531
    # protocol names start with "UTF8"); otherwise keep the header 7-bit.
    if protocol.upper().startswith("UTF8"):
        return text.encode("utf-8", "replace")
    return text.encode("ascii", "replace")


def split_header_block(message: bytes) -> tuple[bytes, bytes]:
    """Split into (header block including its last CRLF, the rest starting with the blank line).

    ``headers + rest == message`` always holds, so callers can edit the header block and
    re-join without copying the body twice. A message that starts with an empty line has
    an empty header block; a message without an empty line is all header block.
    """
    if message.startswith(_CRLF):
        return b"", message
    end = message.find(_BLANK_LINE)
    if end < 0:
        return message, b""
    return message[: end + 2], message[end + 2 :]


def _header_block(message: bytes) -> bytes:
    """The header block alone (as :func:`split_header_block`, without copying the body)."""
    if message.startswith(_CRLF):
        return b""
    end = message.find(_BLANK_LINE)
    return message if end < 0 else message[: end + 2]


def count_fields(message: bytes, name: str) -> int:
    """How many ``name`` fields the header block holds (continuation lines and look-alikes
    in the body are not counted). Only the header block is searched or copied."""
    return len(_field_spans(_header_block(message), name, first_only=False))


def has_fields(message: bytes, name: str, count: int) -> bool:
    """Whether the header block holds at least ``count`` ``name`` fields; cheaper than
    :func:`count_fields` in the usual case of far fewer (one C-level count of the name at
    line starts bounds the number, and only a bound that reaches ``count`` is checked)."""
    headers = _header_block(message)
    needle = b"\r\n" + name.lower().encode("ascii")
    if (b"\r\n" + headers.lower()).count(needle) < count:
        return False
    return len(_field_spans(headers, name, first_only=False)) >= count


def _field_spans(headers: bytes, name: str, first_only: bool) -> list[tuple[int, int, int]]:
    """(start, value_start, end) of each field called ``name``; ``end`` is past its CRLF.

    The search runs on a lower-cased copy prefixed with CRLF so a field on the very first
    line is found like any other; ``bytes.lower`` only touches ASCII so offsets match.
    """
    needle = b"\r\n" + name.lower().encode("ascii")
    haystack = b"\r\n" + headers.lower()
    size = len(headers)
    spans: list[tuple[int, int, int]] = []
    pos = haystack.find(needle)
    while pos >= 0:
        start = pos  # offset in `headers` (the haystack has 2 extra leading bytes)
        colon = pos + len(needle)
        # RFC 5322 obs-optional allows whitespace between the name and the colon.
        while colon < len(haystack) and haystack[colon] in _WSP:
            colon += 1
        if colon < len(haystack) and haystack[colon] == 0x3A:  # ':'
            value_start = colon - 1  # haystack offset → headers offset, past the colon
            end = headers.find(_CRLF, start)
            while end >= 0 and end + 2 < size and headers[end + 2] in _WSP:
                end = headers.find(_CRLF, end + 2)
            end = size if end < 0 else end + 2
            spans.append((start, value_start, end))
            if first_only:
                break
            pos = haystack.find(needle, end)
        else:
            pos = haystack.find(needle, colon)
    return spans


def _unfold(raw: bytes) -> str:
    return raw.replace(_CRLF, b"").strip().decode("utf-8", "replace")


def extract_and_remove_header(message: bytes, name: str) -> tuple[bytes, str | None]:
    """Remove every ``name`` field (with its continuation lines) from the header block.

    Returns the new message and the first field's unfolded, stripped value, or the
    message unchanged (same object) and None when the field is absent.
    """
    headers = _header_block(message)  # the body is only sliced off if a field goes
    if not headers:
        return message, None
    spans = _field_spans(headers, name, first_only=False)
    if not spans:
        return message, None
    rest = message[len(headers) :]
    _, value_start, value_end = spans[0]
    value = _unfold(headers[value_start:value_end])
    pieces = []
    kept_from = 0
    for start, _, end in spans:
        pieces.append(headers[kept_from:start])
        kept_from = end
    pieces.append(headers[kept_from:])
    pieces.append(rest)
    return b"".join(pieces), value


def header_value(message: bytes, name: str) -> str | None:
    """The first ``name`` field's value, unfolded and stripped; None when absent."""
    headers = _header_block(message)
    spans = _field_spans(headers, name, first_only=True)
    if not spans:
        return None
    _, value_start, end = spans[0]
    return _unfold(headers[value_start:end])
