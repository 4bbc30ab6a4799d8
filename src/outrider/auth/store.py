"""The built-in user store: a JSON-lines file of hashed credentials and sending rights.

File format: one JSON object per line, ``#`` comments and blank lines ignored::

    {"user": "alice", "password": "$scrypt$n=32768,r=8,p=1$...$...",
     "scram-sha-256": {"iterations": 10000, "salt": "...", "stored-key": "...",
                       "server-key": "..."},
     "allowed-senders": ["alice@example.com", "example.org"], "max-msg-rate": "100/h"}

(each object on one line). JSON lines keep the file diff-able and line-numbered
for error messages, and need no writer beyond the standard library.

Permissions: the store always writes the file with mode 0600 (temp file,
fsync, rename, directory fsync), keeping the previous owner and group so a file
edited by root stays readable by the daemon's user. Loading *refuses* a file
that group or others can write (anyone who can write it can add a user and
relay through us) and *warns* when group or others can read it (hashes are
exposed to offline guessing, but refusing would take mail down over a chmod).

Reloading: :meth:`UserStore.reload_if_changed` is a single ``stat()`` when
nothing changed. If a changed file cannot be loaded the store fails closed --
no user can authenticate until the file is fixed -- and logs why, since keeping
stale credentials could keep a deleted user alive.

Sender rights: an empty ``allowed-senders`` means any sender. Otherwise an entry
is an address (``a@b.c``), a domain (``b.c`` or ``@b.c``, exact domain, no
subdomains), or ``<>`` for the null reverse-path; the null sender is allowed
only when ``<>`` is listed. Matching is case-insensitive throughout: local-part
case sensitivity is theoretical and treating ``Bob@`` and ``bob@`` as different
senders only produces confusing rejections.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outrider.auth import passwords
from outrider.auth.passwords import PasswordError, ScramCredentials
from outrider.auth.secret import UnknownUserSalts
from outrider.config.units import parse_rate
from outrider.message.domains import domain_key

__all__ = [
    "InvalidUserError",
    "UnknownUserError",
    "UserExistsError",
    "UserRecord",
    "UserStore",
    "UserStoreError",
    "validate_allowed_sender",
    "validate_msg_rate",
    "validate_username",
]

log = logging.getLogger(__name__)

USERNAME_MAX = 64
_HEADER = "# Outrider users file: one JSON object per line. Manage with 'outrider user'.\n"


class UserStoreError(Exception):
    """The users file or a requested change is unusable; the message is for the operator."""


class InvalidUserError(UserStoreError, ValueError):
    pass


class UserExistsError(UserStoreError):
    pass


class UnknownUserError(UserStoreError):
    pass


@dataclass(frozen=True, slots=True)
class UserRecord:
    username: str
    password_hash: str
    scram: ScramCredentials | None = None
    allowed_senders: tuple[str, ...] = ()
    max_msg_rate: str | None = None


@dataclass(frozen=True, slots=True)
class _SenderPolicy:
    """Pre-folded form of ``allowed_senders`` so MAIL FROM checks are set lookups."""

    any_sender: bool
    null_sender: bool = False
    addresses: frozenset[str] = field(default_factory=frozenset)
    domains: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def build(cls, entries: tuple[str, ...]) -> _SenderPolicy:
        if not entries:
            return cls(any_sender=True)
        addresses: set[str] = set()
        domains: set[str] = set()
        null = False
        for entry in entries:
            if entry == "<>":
                null = True
            elif "@" in entry[1:]:
                addresses.add(entry.casefold())
            else:
                domains.add(_fold_domain(entry.removeprefix("@")))
        return cls(False, null, frozenset(addresses), frozenset(domains))

    def allows(self, sender: str) -> bool:
        if self.any_sender:
            return True
        if not sender or sender == "<>":
            return self.null_sender
        if sender.casefold() in self.addresses:
            return True
        _, at, domain = sender.rpartition("@")  # not casefolded: "ß" is not "ss" in IDNA 2008
        return bool(at) and _fold_domain(domain) in self.domains


def _fold_domain(domain: str) -> str:
    """Every spelling of one domain (``Bücher.test.``, ``xn--bcher-kva.test``) alike."""
    return domain_key(domain)


# --------------------------------------------------------------------------- validation


def validate_username(username: str) -> str:
    if not 1 <= len(username) <= USERNAME_MAX:
        raise InvalidUserError(f"user name must be 1-{USERNAME_MAX} characters")
    if not username.isprintable() or " " in username:
        raise InvalidUserError(
            f"user name {username!r} must not contain whitespace or control characters"
        )
    return username


def validate_allowed_sender(entry: str) -> str:
    """Check one ``allowed-senders`` entry: ``a@b.c``, ``b.c``, ``@b.c`` or ``<>``."""
    if entry == "<>":
        return entry
    local, at, domain = entry.rpartition("@")
    if (
        not entry.isprintable()
        or " " in entry
        or "<" in entry
        or ">" in entry
        or "@" in local
        or (at and entry[0] != "@" and not local)
        or not domain
        or domain.startswith(".")
        or domain.endswith(".")
        or ".." in domain
    ):
        raise InvalidUserError(
            f"invalid allowed sender {entry!r}: expected an address a@b.c, a domain b.c or @b.c, "
            "or <> for the null sender"
        )
    return entry


def validate_msg_rate(text: str) -> str | None:
    """Check ``max-msg-rate`` with the config's rate syntax (``"100/h"``, ``"500/10m"``).

    Returns the text to store, or None for ``"unlimited"``.
    """
    try:
        rate = parse_rate(text)
    except ValueError as exc:
        raise InvalidUserError(str(exc)) from None
    return None if rate is None else text.strip()


# --------------------------------------------------------------------------- encoding


def _encode(record: UserRecord) -> str:
    obj: dict[str, Any] = {"user": record.username, "password": record.password_hash}
    if record.scram is not None:
        obj["scram-sha-256"] = {
            "iterations": record.scram.iterations,
            "salt": passwords.b64encode_nopad(record.scram.salt),
            "stored-key": passwords.b64encode_nopad(record.scram.stored_key),
            "server-key": passwords.b64encode_nopad(record.scram.server_key),
        }
    if record.allowed_senders:
        obj["allowed-senders"] = list(record.allowed_senders)
    if record.max_msg_rate is not None:
        obj["max-msg-rate"] = record.max_msg_rate
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


_KNOWN_KEYS = frozenset({"user", "password", "scram-sha-256", "allowed-senders", "max-msg-rate"})


def _decode(obj: Any) -> UserRecord:
    if not isinstance(obj, dict):
        raise InvalidUserError("expected a JSON object")
    unknown = sorted(set(obj) - _KNOWN_KEYS)
    if unknown:
        raise InvalidUserError(f"unknown key {unknown[0]!r}")
    username, password_hash = obj.get("user"), obj.get("password")
    if not isinstance(username, str):
        raise InvalidUserError("'user' must be a string")
    if not isinstance(password_hash, str):
        raise InvalidUserError("'password' must be a string")
    validate_username(username)
    try:
        passwords.check_hash(password_hash)
    except PasswordError as exc:
        raise InvalidUserError(f"user {username!r}: {exc}") from None
    senders = obj.get("allowed-senders", [])
    if not isinstance(senders, list) or not all(isinstance(s, str) for s in senders):
        raise InvalidUserError("'allowed-senders' must be a list of strings")
    for sender in senders:
        validate_allowed_sender(sender)
    rate = obj.get("max-msg-rate")
    if rate is not None:
        if not isinstance(rate, str):
            raise InvalidUserError("'max-msg-rate' must be a string like '100/h'")
        rate = validate_msg_rate(rate)
    return UserRecord(username, password_hash, _decode_scram(obj.get("scram-sha-256")),
                      tuple(senders), rate)  # fmt: skip


def _decode_scram(obj: Any) -> ScramCredentials | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise InvalidUserError("'scram-sha-256' must be an object")
    iterations = obj.get("iterations")
    if not isinstance(iterations, int) or iterations < passwords.SCRAM_MIN_ITERATIONS:
        raise InvalidUserError(
            f"'scram-sha-256.iterations' must be an integer >= {passwords.SCRAM_MIN_ITERATIONS}"
        )
    values: list[bytes] = []
    for key in ("salt", "stored-key", "server-key"):
        text = obj.get(key)
        if not isinstance(text, str):
            raise InvalidUserError(f"'scram-sha-256.{key}' must be a base64 string")
        try:
            values.append(passwords.b64decode_nopad(text))
        except PasswordError:
            raise InvalidUserError(f"'scram-sha-256.{key}' is not valid base64") from None
    salt, stored_key, server_key = values
    if not salt or len(stored_key) != 32 or len(server_key) != 32:
        raise InvalidUserError("'scram-sha-256' keys must be 32 bytes and the salt non-empty")
    return ScramCredentials(salt, iterations, stored_key, server_key)


def _parse(text: str, path: Path) -> dict[str, UserRecord]:
    users: dict[str, UserRecord] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            record = _decode(json.loads(stripped))
        except json.JSONDecodeError as exc:
            raise UserStoreError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
        except InvalidUserError as exc:
            raise UserStoreError(f"{path}:{lineno}: {exc}") from None
        if record.username in users:
            raise UserStoreError(f"{path}:{lineno}: duplicate user {record.username!r}")
        users[record.username] = record
    return users


_Signature = tuple[int, int, int, int, int]


def _signature(st: os.stat_result) -> _Signature:
    # ctime also moves on chmod/chown, so a permission change is re-checked too.
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)


# --------------------------------------------------------------------------- the store


class UserStore:
    """Users file loaded into memory; implements :class:`outrider.auth.sasl.Verifier`.

    A missing file is an empty store (``outrider user add`` creates it).
    Construction raises :class:`UserStoreError` if the file exists but is
    unusable, so the daemon refuses to start on a broken file.

    ``unknown_salts`` gives unknown names their SCRAM salts; the daemon passes the
    ones derived from the secret in ``state-dir``. Without it (the CLI, which serves
    no AUTH) they come from a secret of this process only.
    """

    def __init__(self, path: Path, *, unknown_salts: UnknownUserSalts | None = None) -> None:
        self.path = Path(path)
        self._unknown_salts = unknown_salts or UnknownUserSalts.per_process()
        self._users: dict[str, UserRecord] = {}
        self._senders: dict[str, _SenderPolicy] = {}
        self._signature: _Signature | None = None
        self._install(*self._read())

    # ---------------------------------------------------------------- loading

    def _read(self) -> tuple[dict[str, UserRecord], _Signature | None]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            raise UserStoreError(f"{self.path}: cannot read: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as file:
            st = os.fstat(file.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise UserStoreError(f"{self.path}: not a regular file")
            if st.st_mode & 0o022:
                raise UserStoreError(
                    f"{self.path}: refusing a users file writable by group or others "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600"
                )
            if st.st_mode & 0o044:
                log.warning(
                    "%s: users file is readable by group or others (mode %04o); run chmod 600",
                    self.path,
                    stat.S_IMODE(st.st_mode),
                )
            try:
                raw = file.read()
            except OSError as exc:
                raise UserStoreError(f"{self.path}: cannot read: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserStoreError(f"{self.path}: not valid UTF-8") from None
        return _parse(text, self.path), _signature(st)

    def _install(self, users: dict[str, UserRecord], signature: _Signature | None) -> None:
        senders = {name: _SenderPolicy.build(rec.allowed_senders) for name, rec in users.items()}
        # Two assignments: a reader in another thread may briefly see new users with
        # old sender rights, never a half-built dict.
        self._users = users
        self._senders = senders
        self._signature = signature

    def reload_if_changed(self) -> bool:
        """Reload when the file's mtime, ctime, size, inode or device changed; True if it did.

        Never raises: a file that became unusable empties the store (fails closed)
        and is logged.
        """
        try:
            current: _Signature | None = _signature(os.stat(self.path))
        except FileNotFoundError:
            current = None
        except OSError as exc:
            log.error("%s: cannot stat users file: %s", self.path, exc.strerror)
            return False
        if current == self._signature:
            return False
        try:
            users, signature = self._read()
        except UserStoreError as exc:
            log.error("%s; no user can authenticate until it is fixed", exc)
            self._install({}, current)
            return True
        self._install(users, signature)
        log.info("%s: loaded %d users", self.path, len(users))
        return True

    # ---------------------------------------------------------------- Verifier

    def verify_password(self, username: str, password: str) -> bool:
        record = self._users.get(username)
        if record is None:
            return passwords.dummy_verify(password)
        try:
            return passwords.verify_password(password, record.password_hash)
        except PasswordError as exc:
            log.error("%s: user %r: %s", self.path, username, exc)
            return False

    def scram_credentials(self, username: str) -> ScramCredentials | None:
        record = self._users.get(username)
        return None if record is None else record.scram

    def unknown_user_salt(self, username: str) -> bytes:
        return self._unknown_salts.salt(username)

    # ---------------------------------------------------------------- queries

    def get(self, username: str) -> UserRecord | None:
        return self._users.get(username)

    def max_msg_rate(self, username: str) -> str | None:
        """The user's sending rate limit as stored (e.g. "100/h"); None: unlimited."""
        record = self.get(username)
        return record.max_msg_rate if record is not None else None

    def sender_allowed(self, username: str, sender: str) -> bool:
        """May ``username`` use ``sender`` (bare address, ``""`` for the null sender)?"""
        policy = self._senders.get(username)
        return policy is not None and policy.allows(sender)

    def list(self) -> list[UserRecord]:
        return sorted(self._users.values(), key=lambda record: record.username)

    def __len__(self) -> int:
        return len(self._users)

    # ---------------------------------------------------------------- mutation

    def add(
        self,
        username: str,
        password: str,
        *,
        allowed_senders: Iterable[str] = (),
        max_msg_rate: str | None = None,
        scheme: str = "scrypt",
    ) -> UserRecord:
        validate_username(username)
        senders = tuple(validate_allowed_sender(s) for s in allowed_senders)
        if max_msg_rate is not None:
            max_msg_rate = validate_msg_rate(max_msg_rate)
        password_hash, scram = _credentials(password, scheme)
        record = UserRecord(username, password_hash, scram, senders, max_msg_rate)
        _make_private_directory(self.path.parent)
        with self._locked() as users:
            if username in users:
                raise UserExistsError(f"user {username!r} already exists")
            users[username] = record
        return record

    def delete(self, username: str) -> None:
        with self._locked() as users:
            if users.pop(username, None) is None:
                raise UnknownUserError(f"no such user {username!r}")

    def set_password(self, username: str, password: str, *, scheme: str = "scrypt") -> None:
        password_hash, scram = _credentials(password, scheme)
        with self._locked() as users:
            record = users.get(username)
            if record is None:
                raise UnknownUserError(f"no such user {username!r}")
            users[username] = UserRecord(
                username, password_hash, scram, record.allowed_senders, record.max_msg_rate
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, UserRecord]]:
        """Read-modify-write under an exclusive lock on the directory, then write atomically.

        Re-reading under the lock means two concurrent ``outrider user`` commands
        cannot lose each other's change.
        """
        directory = self.path.parent
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise UserStoreError(f"{directory}: cannot open directory: {exc.strerror}") from None
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX)
            users, _ = self._read()
            yield users
            self._write(users, dir_fd)
            self._install(*self._read())
        finally:
            os.close(dir_fd)  # also releases the lock

    def _write(self, users: dict[str, UserRecord], dir_fd: int) -> None:
        owner: tuple[int, int] | None = None
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(self.path)
            owner = (st.st_uid, st.st_gid)
        lines = [_HEADER, *(_encode(users[name]) + "\n" for name in sorted(users))]
        data = "".join(lines).encode("utf-8")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.fchmod(fd, 0o600)  # O_CREAT honours umask; also fixes a leftover temp file
                if owner is not None and owner != (os.geteuid(), os.getegid()):
                    with contextlib.suppress(PermissionError):
                        os.fchown(fd, *owner)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            os.fsync(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise UserStoreError(f"{self.path}: cannot write: {exc.strerror}") from None


def _make_private_directory(directory: Path) -> None:
    """Create the users file's directory, and any missing parent, with mode 0700 (the
    first ``outrider user add`` may come before anything else made it)."""
    missing: list[Path] = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise UserStoreError(f"{path}: cannot create directory: {exc.strerror}") from None
        os.chmod(path, 0o700)  # mkdir honours the umask


def _credentials(password: str, scheme: str) -> tuple[str, ScramCredentials]:
    """Hash for PLAIN/LOGIN plus SCRAM keys, both from the one password."""
    return passwords.hash_password(password, scheme=scheme), passwords.derive_scram_credentials(
        password
    )
