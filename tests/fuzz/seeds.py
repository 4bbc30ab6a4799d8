"""Seed inputs from tests/fuzz/corpus and examples/: real replies, configs, messages.

Seed files are kept with LF line ends so they read well in review; the wire forms
(CRLF, and bare LF as sloppy peers send it) are made here.
"""

from __future__ import annotations

from pathlib import Path

from tests.fuzz.harness import CORPUS

EXAMPLES = Path(__file__).parents[2] / "examples"


def _texts(folder: str, pattern: str) -> list[str]:
    return [path.read_text("utf-8") for path in sorted((CORPUS / folder).glob(pattern))]


def _crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def _reply_groups(text: str) -> list[bytes]:
    """Each reply (its continuation lines and final line) of a seed file, in CRLF form."""
    replies: list[bytes] = []
    current: list[str] = []
    for line in text.splitlines():
        current.append(line)
        if line[3:4] != "-":
            replies.append(_crlf("\n".join(current) + "\n"))
            current = []
    return replies


_REPLY_FILES = _texts("replies", "*.txt")
REPLY_SEEDS: list[bytes] = [r for text in _REPLY_FILES for r in _reply_groups(text)]
REPLY_SEEDS += [text.encode("utf-8") for text in _REPLY_FILES]  # whole files, bare LF

CONFIG_SEEDS: list[str] = _texts("config", "*.toml") + [
    path.read_text("utf-8") for path in sorted(EXAMPLES.glob("*.toml"))
]

MESSAGE_SEEDS: list[bytes] = [_crlf(text) for text in _texts("messages", "*.eml")]

assert REPLY_SEEDS and CONFIG_SEEDS and MESSAGE_SEEDS, f"seed files missing under {CORPUS}"
