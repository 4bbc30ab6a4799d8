"""Daemon logging: human-readable lines on stderr.

Every line of a message carries the full prefix (time, level, process, logger), so a
subscriber may log a batch of events as one record with one line per event: the mail
log lines then cost one log record per batch instead of one per recipient.
"""

from __future__ import annotations

import logging
import sys


class LinePrefixFormatter(logging.Formatter):
    """Repeats the prefix on each line of a multi-line message (not on tracebacks)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        message = record.message
        if "\n" not in message:
            return text
        start = text.find(message)
        if start < 0:
            return text
        prefix = text[:start]
        rest = text[start + len(message) :]
        return prefix + message.replace("\n", "\n" + prefix) + rest


def setup_logging(level: str = "INFO", *, process_tag: str = "") -> None:
    tag = f"[{process_tag}] " if process_tag else ""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        LinePrefixFormatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
