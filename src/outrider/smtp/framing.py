"""Byte-level DATA framing: terminator search, bare CR/LF and line-length checks, unstuffing.

Every function works on whole runs of complete CRLF-terminated lines with a few
C-level ``bytes`` operations, never a Python loop over lines or octets. Only CRLF
is a line end and only CRLF "." CRLF ends DATA (the SMTP smuggling defence,
CVE-2023-51764 class): a bare CR or LF is data, and data carrying one is refused.
"""

from __future__ import annotations

import enum

CRLF = b"\r\n"
TERMINATOR = b"\r\n.\r\n"
FIRST_LINE_TERMINATOR = b".\r\n"  # the terminator when the body is empty
TERMINATOR_TAIL = len(TERMINATOR) - 1  # octets to keep to find a terminator split across reads
_CR_LF = b"\r\n"  # the octets bytes.splitlines ends a line at


class TextFault(enum.Enum):
    BARE_LINE_ENDING = "bare CR or LF"
    LINE_TOO_LONG = "line too long"


def find_data_end(buf: bytes, pos: int) -> tuple[int, int] | None:
    """Locate the end of DATA in ``buf[pos:]``, where ``pos`` is at the start of a line.

    Returns (end of content, position after the terminator): the content keeps the
    CRLF of its last line, and the terminator's own octets are dropped.
    """
    if buf.startswith(FIRST_LINE_TERMINATOR, pos):
        return pos, pos + 3
    t = buf.find(TERMINATOR, pos)
    if t < 0:
        return None
    return t + 2, t + 5


def check_lines(content: bytes, max_line_length: int) -> TextFault | None:
    """Check complete CRLF-ended lines; ``max_line_length`` includes the CRLF.

    One ``splitlines`` serves both checks: it ends a line at a CRLF (two octets) or at
    a bare CR or LF (one), so the lines are all CRLF-ended exactly when it removed two
    octets per line end. (Counting ``b"\\r\\n"`` and splitting at it would scan the
    content twice more, at a third of the speed: multi-octet searches are slower.)
    """
    if not content:
        return None
    lines = content.splitlines()
    line_ends = len(lines) if content[-1] in _CR_LF else len(lines) - 1
    if len(content) - sum(map(len, lines)) != 2 * line_ends:
        return TextFault.BARE_LINE_ENDING
    if len(content) > max_line_length and max(map(len, lines)) > max_line_length - 2:
        return TextFault.LINE_TOO_LONG
    return None


def unstuff(content: bytes) -> bytes:
    """RFC 5321 4.5.2: drop the first period of every line that starts with one.

    ``content`` must start at the beginning of a line and hold no terminator.
    """
    if content[:1] == b".":
        content = content[1:]
    return content.replace(b"\r\n.", CRLF)
