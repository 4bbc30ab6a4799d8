"""Queue ids: short, unique across processes and restarts, time-sortable, filename-safe.

Layout (19 characters of Crockford base32, whose alphabet is in ascending ASCII order so
string order equals numeric order):

* 11 chars: microseconds since the Unix epoch (55 bits, good until the year 3111);
* 5 chars: the process id (25 bits, above Linux's largest ``pid_max`` of 2**22);
* 3 chars: a sequence number within one microsecond (15 bits).

Two live processes on one host never share a pid, and a restarted process with a reused
pid starts at a later microsecond, so ids never repeat. Within a process the (time,
sequence) pair only ever increases, even if the wall clock steps backwards, so a process's
ids sort in the order they were issued. Processes sharing a spool must share a pid
namespace (the spool refuses to overwrite an existing message all the same).
"""

from __future__ import annotations

import os
import re
import threading
import time

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TIME_CHARS = 11
_PID_CHARS = 5
_SEQ_CHARS = 3
_SEQ_LIMIT = 32**_SEQ_CHARS
QUEUE_ID_LENGTH = _TIME_CHARS + _PID_CHARS + _SEQ_CHARS

_QUEUE_ID_RE = re.compile(f"[{ALPHABET}]{{{QUEUE_ID_LENGTH}}}")


def _b32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    if value:
        raise ValueError("value does not fit")
    return "".join(reversed(chars))


class _Generator:
    """Per-process state; reset in a forked child so parent and child never collide."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()  # a lock held at fork time would stay held in the child
        self._pid = _b32(os.getpid() % (32**_PID_CHARS), _PID_CHARS)
        self._last_us = 0
        self._seq = 0

    def next(self) -> str:
        now = time.time_ns() // 1000
        with self._lock:
            if now > self._last_us:
                self._last_us = now
                self._seq = 0
            else:
                self._seq += 1
                if self._seq >= _SEQ_LIMIT:
                    self._last_us += 1
                    self._seq = 0
            us, seq = self._last_us, self._seq
        return _b32(us, _TIME_CHARS) + self._pid + _b32(seq, _SEQ_CHARS)


_generator = _Generator()
os.register_at_fork(after_in_child=_generator._reset)


def new_queue_id() -> str:
    """A fresh queue id, e.g. ``"0SRQ3M5N2XK01F2G000"``."""
    return _generator.next()


def is_queue_id(text: str) -> bool:
    """Whether ``text`` has the exact shape of an id from :func:`new_queue_id`."""
    return _QUEUE_ID_RE.fullmatch(text) is not None


def queue_id_time(queue_id: str) -> float:
    """Epoch seconds at which ``queue_id`` was issued (for ages and log correlation)."""
    if not is_queue_id(queue_id):
        raise ValueError(f"not a queue id: {queue_id!r}")
    us = 0
    for ch in queue_id[:_TIME_CHARS]:
        us = us * 32 + ALPHABET.index(ch)
    return us / 1_000_000
