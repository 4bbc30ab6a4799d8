"""The server's SCRAM secret: the key the fake salts of unknown users are derived from.

SCRAM-SHA-256 sends the user's salt before any proof, so an unknown name must get a
salt too, and the same one every time, as a real user does. It is
``HMAC-SHA256(secret, name)`` truncated to a real salt's length. The secret lives in
``state-dir/scram-secret`` (32 random bytes, mode 0600) so that every receiver
process and every restart hands out the same fake salt; a secret per process would
give an unknown name a different salt per process or per restart while a real user's
never changes, which tells the two apart.

The file is created on first use, atomically: the bytes are written and fsynced
under a temporary name, then hard-linked to the final name, which fails if another
process got there first; every process then uses whatever the final name holds. So
receiver processes starting together agree, and no one ever reads a partial file.
(The state directory must be on a filesystem with hard links, as every local Linux
one is.)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

__all__ = ["SECRET_BYTES", "SECRET_FILE", "SecretError", "UnknownUserSalts", "load_secret"]

log = logging.getLogger(__name__)

SECRET_FILE = "scram-secret"
SECRET_BYTES = 32
SALT_BYTES = 16  # as outrider.auth.passwords gives real users


class SecretError(Exception):
    """The secret file cannot be read or created; the message is for the operator."""


class UnknownUserSalts:
    """Fake SCRAM salts for names that are no user: stable per name for a given secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the SCRAM secret must have at least 16 bytes")
        self._secret = secret

    @classmethod
    def from_state_dir(cls, state_dir: Path) -> UnknownUserSalts:
        return cls(load_secret(state_dir))

    @classmethod
    def per_process(cls) -> UnknownUserSalts:
        """A secret only this process knows: for a store that serves no AUTH (the CLI)."""
        return cls(secrets.token_bytes(SECRET_BYTES))

    def salt(self, username: str) -> bytes:
        digest = hmac.digest(self._secret, username.encode("utf-8"), hashlib.sha256)
        return digest[:SALT_BYTES]


def load_secret(state_dir: Path) -> bytes:
    """The secret in ``state_dir``, created (with the directory) if there is none yet."""
    path = Path(state_dir) / SECRET_FILE
    secret = _read(path)
    if secret is not None:
        return secret
    _create(path)
    secret = _read(path)
    if secret is None:  # pragma: no cover - removed between creating and reading it
        raise SecretError(f"{path}: vanished right after it was created")
    return secret


def _read(path: Path) -> bytes | None:
    """The secret, or None when the file does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SecretError(f"{path}: cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        st = os.fstat(file.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SecretError(f"{path}: not a regular file")
        if st.st_mode & 0o077:
            log.warning(
                "%s: readable by group or others (mode %04o); run chmod 600",
                path,
                stat.S_IMODE(st.st_mode),
            )
        data = file.read(SECRET_BYTES + 1)
    if len(data) != SECRET_BYTES:
        raise SecretError(
            f"{path}: expected {SECRET_BYTES} bytes, found {len(data)}; remove it and a new "
            "one is made at the next start (unknown users' SCRAM salts then change once)"
        )
    return data


def _create(path: Path) -> None:
    """Write a new secret under a temporary name and publish it unless one exists."""
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SecretError(f"{directory}: cannot create the SCRAM secret: {exc.strerror}") from None
    tmp = directory / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # O_CREAT honours the umask: make sure of 0600
            data = memoryview(secrets.token_bytes(SECRET_BYTES))
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        _publish(tmp, path)
        os.fsync(dir_fd)
    except OSError as exc:
        raise SecretError(f"{path}: cannot create: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        os.close(dir_fd)


def _publish(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the final name unless another process already did for its own file.
    ``link`` is atomic and never replaces, so the first process wins (a ``rename``
    would let the last one win, after the first had begun using its own secret)."""
    with contextlib.suppress(FileExistsError):
        os.link(tmp, path)
