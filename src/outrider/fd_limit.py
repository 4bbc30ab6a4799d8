"""Raising the open-files limit when the daemon starts.

Every SMTP connection is a file descriptor. A service manager's default soft limit
(systemd: 1024) is below the shipped ``max-connections`` (1000) plus the daemon's own
files, and past it uvloop accepts each new connection and closes it at once, with no
reply and no log line (libuv's answer to EMFILE): the listener's limits never get to
refuse, and trusted clients are cut off like everyone else. Any process may raise its
soft limit up to the hard one, so ``outrider run`` does that first; receiver processes
inherit it.
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

__all__ = ["raise_open_files_limit", "wanted_soft_limit"]

log = logging.getLogger("outrider.daemon")

# The kernel's ceiling for one process (fs.nr_open) when the hard limit is unlimited.
_NR_OPEN = Path("/proc/sys/fs/nr_open")
_NR_OPEN_DEFAULT = 1 << 20


def wanted_soft_limit(soft: int, hard: int, nr_open: int) -> int:
    """The soft limit to ask for: the hard limit, or ``nr_open`` when the hard limit is
    unlimited; never lower than the current soft limit."""
    if soft == resource.RLIM_INFINITY:
        return soft
    target = nr_open if hard == resource.RLIM_INFINITY else min(hard, nr_open)
    return max(soft, target)


def _nr_open() -> int:
    try:
        return int(_NR_OPEN.read_text())
    except (OSError, ValueError):
        return _NR_OPEN_DEFAULT


def raise_open_files_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit (see :func:`wanted_soft_limit`) and log it;
    returns the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = wanted_soft_limit(soft, hard, _nr_open())
    if want == soft:
        log.debug("open files limit: %d", soft)
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError) as exc:
        log.warning("open files limit stays %d (could not raise it to %d: %s)", soft, want, exc)
        return soft
    log.info("open files limit raised from %d to %d", soft, want)
    return want
