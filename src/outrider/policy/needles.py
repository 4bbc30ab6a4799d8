"""Literal prefilters for case-insensitive regular expressions.

Python's ``re`` tries every alternative of a pattern like ``user unknown|no such user|…``
at every position of the text: ~10 µs for a 150-character reply, so a hundred rules
cost a third of a millisecond per reply that none of them matches. But almost every rule
needs some literal text to match: :func:`needles` finds, from the parsed pattern, a few
lower-case strings one of which every match contains. ``needle in text.lower()`` is a
C-speed substring search, so a rule whose needles are all absent is skipped without
running its regex.

The analysis is conservative: anything it does not understand (or a pattern with no
literal of three characters or more on every path) gives None, and the rule is always
tried. It reads the pattern with ``re._parser``, the parser ``re`` itself uses (an
internal module: any failure also gives None).
"""

from __future__ import annotations

import importlib
from typing import Any

MIN_NEEDLE = 3  # shorter literals are in nearly every text: no use as a filter

try:
    _parser: Any = importlib.import_module("re._parser")
    _c: Any = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover - another Python's internals
    _parser = _c = None


def needles(pattern: str, flags: int) -> tuple[str, ...] | None:
    """Lower-case ASCII strings one of which is in the lower-cased text of every match of
    ``pattern`` (compiled with ``flags``), or None when no such set was found."""
    if _parser is None:
        return None
    try:
        return _required(list(_parser.parse(pattern, flags)))
    except Exception:  # an internal API: never let it break rule loading
        return None


def _required(items: list[tuple[Any, Any]]) -> tuple[str, ...] | None:
    """The most selective requirement of a sequence: the longest literal run, or the
    needles of a mandatory group or alternation, whichever has the longest shortest one."""
    candidates: list[tuple[str, ...]] = []
    run: list[str] = []

    def flush() -> None:
        if len(run) >= MIN_NEEDLE:
            candidates.append(("".join(run).lower(),))
        run.clear()

    for op, av in items:
        if op is _c.LITERAL and av < 128:
            run.append(chr(av))
            continue
        flush()
        found: tuple[str, ...] | None = None
        if op is _c.BRANCH:
            found = _either([list(alt) for alt in av[1]])
        elif op is _c.SUBPATTERN:
            found = _required(list(av[-1]))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT) and av[0] >= 1:
            found = _required(list(av[2]))
        if found:
            candidates.append(found)
    flush()
    if not candidates:
        return None
    return max(candidates, key=lambda c: (min(map(len, c)), -len(c)))


def _either(alternatives: list[list[tuple[Any, Any]]]) -> tuple[str, ...] | None:
    """Every alternative must have needles for the alternation to have them."""
    union: list[str] = []
    for alt in alternatives:
        found = _required(alt)
        if found is None:
            return None
        union.extend(n for n in found if n not in union)
    return tuple(union)
