"""Counting inbound SMTP connections from outside the processes that hold them.

With receiver processes (the default) the listeners and their sessions live in
other processes; the kernel's socket table still knows every connection, so the
daemon counts the established TCP sockets on its listening ports (Linux /proc).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
ESTABLISHED = "01"


def count_established(lines: Iterable[str], ports: set[int]) -> int:
    """Established sockets whose local port is one of ``ports``, in /proc/net/tcp format
    (``sl local_address rem_address st ...``, addresses as ``HEXIP:HEXPORT``)."""
    count = 0
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[3] != ESTABLISHED:
            continue
        _, _, port = fields[1].rpartition(":")
        try:
            if int(port, 16) in ports:
                count += 1
        except ValueError:
            continue
    return count


def inbound_connections(ports: set[int], tables: Iterable[Path] = TABLES) -> int | None:
    """Established connections to ``ports``; None where the kernel does not say."""
    total = 0
    found = False
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        found = True
        total += count_established(lines, ports)
    return total if found else None
