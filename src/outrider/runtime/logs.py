"""Daemon logging: human-readable lines on stderr."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO", *, process_tag: str = "") -> None:
    tag = f"[{process_tag}] " if process_tag else ""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
