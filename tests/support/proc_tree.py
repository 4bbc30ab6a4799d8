"""Resident memory and CPU time of a process and its descendants, from Linux /proc.

The daemon's footprint is its main process plus its receiver processes, so memory
figures add the VmRSS of the whole tree (children found through
``/proc/<pid>/task/*/children``, which lists each thread's children).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "descendants", "rss_kib", "socket_count", "tree_rss_kib"]


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, their children, ...)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                text = children.read_text()
            except OSError:  # the thread or process ended meanwhile
                continue
            for child in (int(c) for c in text.split()):
                if child not in found:
                    found.append(child)
                    stack.append(child)
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB; 0 when it is gone (or a zombie, which has none)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_rss_kib(pid: int) -> dict[int, int]:
    """VmRSS in KiB of ``pid`` and of each descendant, by process id."""
    return {p: rss_kib(p) for p in [pid, *descendants(pid)]}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` and its live descendants, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def socket_count(pid: int) -> int:
    """Sockets open in ``pid`` (listening, connected, Unix): a receiver process holds one
    per client connection until it has seen the connection close."""
    count = 0
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0
    for fd in fds:
        try:
            if os.readlink(fd).startswith("socket:"):
                count += 1
        except OSError:  # closed meanwhile
            continue
    return count
