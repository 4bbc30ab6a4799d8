"""Writing one message into one Maildir, the way the Maildir spec makes it crash-safe.

The file is written under ``tmp/`` with a name no other delivery can use (time,
microseconds, pid, a per-process counter, random bits, host name), synced, then
hard-linked into ``new/`` as ``<unique>,S=<size>`` (``link`` never replaces a file; a
file system without hard links gets a rename), ``new/`` is synced, and only then is
the ``tmp/`` name removed and success reported. A crash at any point leaves at most a
file in ``tmp/`` (which readers ignore and the spec lets anyone remove after 36
hours): ``new/`` only ever holds complete messages.

Everything here blocks: :mod:`outrider.delivery.maildir_transport` runs it in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import threading
import time
from dataclasses import dataclass, field

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "LfConverter",
    "MaildirFile",
    "QuotaCache",
    "ensure_maildir",
    "maildir_usage",
    "unique_name",
]

DIR_MODE = 0o700
FILE_MODE = 0o600
_SUBDIRS = ("tmp", "new", "cur")
_counter = itertools.count(1)
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}


def unique_name(hostname: str, now: float | None = None) -> str:
    """A Maildir unique name: ``<sec>.M<usec>P<pid>Q<n>R<random>.<host>``, with ``/``
    and ``:`` in the host name written as ``\\057`` and ``\\072`` (the spec's rule)."""
    now = time.time() if now is None else now
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    host = hostname.replace("/", "\\057").replace(":", "\\072") or "localhost"
    return f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}R{secrets.token_hex(4)}.{host}"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_maildir(path: str) -> None:
    """Create ``path`` (and missing parents) with ``tmp``, ``new`` and ``cur``, mode 0700;
    each directory created is made durable in its parent before mail goes into it."""
    if all(os.path.isdir(os.path.join(path, sub)) for sub in _SUBDIRS):
        return
    missing: list[str] = []
    probe = path
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    created: list[str] = []
    for directory in [*reversed(missing), *(os.path.join(path, sub) for sub in _SUBDIRS)]:
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue
        created.append(directory)
    for parent in dict.fromkeys(os.path.dirname(d) for d in created):
        _fsync_dir(parent)


def _size_of(directory: str, name: str) -> int:
    """A message's size from its ``,S=`` tag (Dovecot, Courier), else from ``stat``."""
    base = name.split(":", 1)[0]
    for part in base.split(",")[1:]:
        if part.startswith("S=") and part[2:].isdigit():
            return int(part[2:])
    try:
        return os.stat(os.path.join(directory, name)).st_size
    except FileNotFoundError:  # moved or removed by a reader meanwhile
        return 0


def maildir_usage(path: str) -> int:
    """Octets in ``new/`` and ``cur/`` (what a quota counts; ``tmp/`` is in flight)."""
    total = 0
    for sub in ("new", "cur"):
        directory = os.path.join(path, sub)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        total += sum(_size_of(directory, name) for name in names if not name.startswith("."))
    return total


@dataclass(slots=True)
class QuotaCache:
    """Mailbox usage, scanned at most every ``ttl`` seconds per mailbox and counted up
    as mail is added. A delivery the cache would refuse scans again first, so mail the
    user has deleted meanwhile frees room at once. Thread-safe."""

    ttl: float = 30.0
    _usage: dict[str, tuple[int, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fits(self, path: str, size: int, quota: int) -> bool:
        now = time.monotonic()
        with self._lock:
            cached = self._usage.get(path)
        if cached is not None and now - cached[1] < self.ttl and cached[0] + size <= quota:
            return True
        used = maildir_usage(path)
        with self._lock:
            self._usage[path] = (used, now)
        return used + size <= quota

    def add(self, path: str, size: int) -> None:
        with self._lock:
            cached = self._usage.get(path)
            if cached is not None:
                self._usage[path] = (cached[0] + size, cached[1])


class LfConverter:
    """CRLF → LF for a body given in pieces (a CR ending one piece may start a CRLF with
    the next). Lone CRs and LFs are kept: only line ends change."""

    __slots__ = ("_carry",)

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, piece: bytes) -> bytes:
        if self._carry:
            piece = self._carry + piece
            self._carry = b""
        if piece.endswith(b"\r"):
            self._carry = b"\r"
            piece = piece[:-1]
        return piece.replace(b"\r\n", b"\n")

    def end(self) -> bytes:
        rest, self._carry = self._carry, b""
        return rest


class MaildirFile:
    """One message on its way into one Maildir: :meth:`write` the octets, then
    :meth:`commit` (durable in ``new/``) or :meth:`abort` (nothing left behind)."""

    def __init__(self, maildir: str, hostname: str, *, lf: bool) -> None:
        self.maildir = maildir
        self.unique = unique_name(hostname)
        self.tmp_path = os.path.join(maildir, "tmp", self.unique)
        self.size = 0
        self.new_name = ""  # set once linked into new/
        self.committed = False  # durable in new/ and the tmp/ name gone
        self._converter = LfConverter() if lf else None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd: int | None = os.open(self.tmp_path, flags, FILE_MODE)

    def write(self, data: bytes) -> None:
        if self._converter is not None:
            data = self._converter.feed(data)
        self._write_all(data)

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.size += len(data)

    def commit(self) -> str:
        """Sync the file, link it into ``new/``, sync ``new/``, drop the ``tmp/`` name;
        returns the name in ``new/``. Raises OSError, after which :meth:`abort` cleans up."""
        if self._converter is not None:
            self._write_all(self._converter.end())
        assert self._fd is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        new_dir = os.path.join(self.maildir, "new")
        name = f"{self.unique},S={self.size}"
        target = os.path.join(new_dir, name)
        try:
            os.link(self.tmp_path, target)
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS or os.path.lexists(target):
                raise
            os.rename(self.tmp_path, target)  # no hard links here; the name is unique
        self.new_name = name
        _fsync_dir(new_dir)
        with contextlib.suppress(FileNotFoundError):  # renamed above
            os.unlink(self.tmp_path)
        self.committed = True
        return name

    def abort(self) -> None:
        """Close and remove the ``tmp/`` name (a link already in ``new/`` stays: it is
        complete, and the retry this failure causes is the at-least-once the spec
        allows); never raises."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            os.unlink(self.tmp_path)
