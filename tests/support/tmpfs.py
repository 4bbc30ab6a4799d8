"""A small tmpfs to fill up, for tests of what the daemon does when its disk is full.

Mounting needs root (or CAP_SYS_ADMIN); :func:`mount_tmpfs` raises :class:`MountError`
when the kernel refuses, so a test can skip with the reason. tmpfs counts whole pages:
a file whose last page has room takes small appends even when ``df`` shows 0 bytes free,
which :func:`page_slack` measures.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


class MountError(OSError):
    """``mount -t tmpfs`` failed (no privilege, no tmpfs in this kernel)."""


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


@contextmanager
def mount_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (e.g. ``"4m"``) on ``path`` for the block; unmount after.

    Whoever holds files open in it must be stopped inside the block; a busy mount is
    detached lazily rather than left behind.
    """
    path.mkdir(parents=True, exist_ok=True)
    result = _run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)])
    if result.returncode != 0:
        raise MountError(f"mount -t tmpfs on {path} failed: {result.stderr.strip()}")
    try:
        yield path
    finally:
        if _run(["umount", str(path)]).returncode != 0:
            _run(["umount", "-l", str(path)])


def fill(directory: Path, name: str = "filler") -> Path:
    """Write ``directory/name`` until the file system says ENOSPC; returns the file.

    Every full page is taken, so a new file can be created but gets no byte written.
    """
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    block = b"\0" * (64 * 1024)
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
    finally:
        os.close(fd)
    return path


def free_bytes(directory: Path) -> int:
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize


def page_slack(path: Path) -> int:
    """Bytes that can still be appended to ``path`` without a new page."""
    return -path.stat().st_size % PAGE
