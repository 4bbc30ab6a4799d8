"""SMTP replies: a code, an enhanced status code (RFC 3463) and text.

Every reply Outrider sends is built here so the codes stay consistent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply. ``enhanced`` is empty for replies that carry none (220, 221 greeting)."""

    code: int
    enhanced: str
    text: str

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def lines(self) -> list[str]:
        return self.text.split("\n") if self.text else [""]

    def to_bytes(self) -> bytes:
        """Wire form; multi-line text (``\\n`` separated) becomes ``250-`` continuation lines."""
        parts = self.lines()
        out = []
        last = len(parts) - 1
        for i, part in enumerate(parts):
            sep = " " if i == last else "-"
            body = f"{self.enhanced} {part}" if self.enhanced else part
            out.append(f"{self.code}{sep}{body}".rstrip() + "\r\n")
        return "".join(out).encode("utf-8", "replace")

    def __str__(self) -> str:
        return one_line(self.code, self.enhanced, self.lines())


def one_line(code: int, enhanced: str, lines: list[str]) -> str:
    """A reply as one line of text, the form in ``dsnDiag``, events, DSN diagnostics and the
    daemon log: ``CODE [ENHANCED] text; text``. Each line's text is trimmed (Exim's
    ``250- 2062 byte chunk`` has a space where the enhanced code would be) and empty lines
    are left out, so a two-line reply reads ``250 2062 byte chunk, total 2062; OK id=1x``
    and not ``250  2062 byte chunk, total 2062 OK id=1x``. Any CR or LF left inside a line
    becomes a space: the result is always one line."""
    parts = [part.replace("\r", " ").replace("\n", " ").strip() for part in lines]
    text = "; ".join(part for part in parts if part)
    head = f"{code} {enhanced}" if enhanced else str(code)
    return f"{head} {text}" if text else head


# Replies used by more than one module.
OK = Reply(250, "2.0.0", "OK")
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
SYNTAX_ERROR = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
UNRECOGNISED = Reply(500, "5.5.2", "Syntax error, command unrecognized")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
BARE_LINE_ENDING = Reply(500, "5.5.2", "Bare CR or LF not allowed; lines end with CRLF")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing; try again later")
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, closing transmission channel")
