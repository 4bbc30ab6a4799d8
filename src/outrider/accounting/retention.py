"""Accounting file names, and which files ``[accounting] keep`` lets go.

A file's age is read from the date in its name, never from its mtime: copying or
touching a file (a backup, a ``gzip -k``) must not change what is kept. Names that do
not follow the pattern are never chosen, so nothing else in the log directory can be
deleted by mistake.
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Iterable

DAY = 86_400


def file_name(prefix: str, day: str, aside: int = 0) -> str:
    """``acct-2026-11-27.csv``, or ``acct-2026-11-27.1.csv`` for a file moved aside."""
    return f"{prefix}-{day}.{aside}.csv" if aside else f"{prefix}-{day}.csv"


def name_pattern(prefix: str) -> re.Pattern[str]:
    """The day's file and the files moved aside for it (``.N`` before ``.csv``)."""
    return re.compile(rf"{re.escape(prefix)}-(\d{{4}})-(\d\d)-(\d\d)(?:\.[1-9]\d*)?\.csv")


def day_of(name: str, pattern: re.Pattern[str]) -> float | None:
    """Epoch second at which the UTC day named by ``name`` starts; None if not a log file."""
    match = pattern.fullmatch(name)
    if match is None:
        return None
    year, month, day = (int(part) for part in match.groups())
    try:
        datetime.date(year, month, day)
    except ValueError:  # acct-2026-13-45.csv is not ours
        return None
    return float(calendar.timegm((year, month, day, 0, 0, 0)))


def expired(names: Iterable[str], *, prefix: str, now: float, keep: float) -> list[str]:
    """The accounting files among ``names`` whose whole day ended ``keep`` or more ago.

    The newest row a file can hold was written just before its day ended, so a file
    is let go only once every row in it is older than ``keep``."""
    pattern = name_pattern(prefix)
    chosen = []
    for name in names:
        start = day_of(name, pattern)
        if start is not None and start + DAY + keep <= now:
            chosen.append(name)
    return sorted(chosen)


def aside_name(prefix: str, day: str, taken: Iterable[str]) -> str:
    """The first free ``<prefix>-<day>.N.csv`` name."""
    used = set(taken)
    n = 1
    while file_name(prefix, day, n) in used:
        n += 1
    return file_name(prefix, day, n)
