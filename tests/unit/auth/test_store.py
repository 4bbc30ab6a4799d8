from __future__ import annotations

import json
import logging
import os
import stat
import threading
from pathlib import Path

import pytest

from outrider.auth.passwords import derive_scram_credentials
from outrider.auth.store import (
    InvalidUserError,
    UnknownUserError,
    UserExistsError,
    UserStore,
    UserStoreError,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "users"


@pytest.fixture
def store(path: Path) -> UserStore:
    store = UserStore(path)
    store.add("alice", "s3cret", allowed_senders=["alice@example.com", "example.org"])
    store.add("bob", "hunter2", max_msg_rate="100/h")
    return store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_missing_file_is_an_empty_store(path: Path) -> None:
    store = UserStore(path)
    assert store.list() == []
    assert not store.verify_password("alice", "x")
    assert store.scram_credentials("alice") is None
    assert not store.reload_if_changed()


def test_add_and_verify(store: UserStore, path: Path) -> None:
    assert store.verify_password("alice", "s3cret")
    assert not store.verify_password("alice", "S3cret")
    assert not store.verify_password("Alice", "s3cret")  # names are exact
    assert not store.verify_password("nobody", "s3cret")
    assert [r.username for r in store.list()] == ["alice", "bob"]
    bob = store.get("bob")
    assert bob is not None and bob.max_msg_rate == "100/h" and bob.allowed_senders == ()
    assert mode(path) == 0o600


def test_file_holds_no_plaintext(store: UserStore, path: Path) -> None:
    text = path.read_text()
    assert "s3cret" not in text and "hunter2" not in text
    assert text.startswith("#")
    records = [json.loads(line) for line in text.splitlines() if not line.startswith("#")]
    assert [r["user"] for r in records] == ["alice", "bob"]
    assert records[0]["password"].startswith("$scrypt$")
    assert set(records[0]["scram-sha-256"]) == {"iterations", "salt", "stored-key", "server-key"}


def test_scram_credentials_are_derived_from_the_password(store: UserStore) -> None:
    creds = store.scram_credentials("alice")
    assert creds is not None
    again = derive_scram_credentials("s3cret", salt=creds.salt, iterations=creds.iterations)
    assert again == creds


def test_mode_is_0600_even_with_a_permissive_umask(path: Path) -> None:
    old = os.umask(0)
    try:
        UserStore(path).add("carol", "pw")
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_a_new_instance_reads_what_was_written(store: UserStore, path: Path) -> None:
    other = UserStore(path)
    assert other.list() == store.list()
    assert other.verify_password("bob", "hunter2")


def test_reload_if_changed(store: UserStore, path: Path) -> None:
    reader = UserStore(path)
    assert not reader.reload_if_changed()
    store.add("carol", "pw")
    assert reader.get("carol") is None
    assert reader.reload_if_changed()
    assert reader.verify_password("carol", "pw")
    assert not reader.reload_if_changed()
    store.set_password("carol", "new")
    assert reader.reload_if_changed()
    assert reader.verify_password("carol", "new")
    assert not reader.verify_password("carol", "pw")
    store.delete("carol")
    assert reader.reload_if_changed()
    assert reader.get("carol") is None


def test_reload_sees_same_size_rewrite(store: UserStore, path: Path) -> None:
    """An in-place edit keeping size and mtime granularity still changes mtime_ns or inode."""
    reader = UserStore(path)
    text = path.read_text().replace('"100/h"', '"200/h"')
    tmp = path.with_name("edited")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    st = path.stat()
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only inode differs
    os.replace(tmp, path)
    assert reader.reload_if_changed()
    record = reader.get("bob")
    assert record is not None and record.max_msg_rate == "200/h"


def test_deleted_file_empties_the_store(store: UserStore, path: Path) -> None:
    path.unlink()
    assert store.reload_if_changed()
    assert store.list() == []


def test_broken_reload_fails_closed(
    store: UserStore, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with path.open("a") as f:
        f.write("{not json\n")
    with caplog.at_level(logging.ERROR, logger="outrider.auth.store"):
        assert store.reload_if_changed()
    assert not store.verify_password("alice", "s3cret")
    assert "invalid JSON" in caplog.text and ":4:" in caplog.text
    assert not store.reload_if_changed()  # not re-parsed on every AUTH


def test_broken_file_at_startup_raises(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'{"user": "x", "password": "plain"}\n')
    os.close(fd)
    with pytest.raises(UserStoreError, match=r"users:1: user 'x': unknown password hash"):
        UserStore(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[]", "expected a JSON object"),
        ('{"user": "a b", "password": "x"}', "must be a string|whitespace"),
        ('{"user": "a", "password": "x", "extra": 1}', "unknown key 'extra'"),
        ('{"user": "a", "password": 5}', "'password' must be a string"),
    ],
)
def test_invalid_lines(path: Path, line: str, message: str) -> None:
    path.write_text(line + "\n")
    path.chmod(0o600)
    with pytest.raises(UserStoreError, match=message):
        UserStore(path)


def test_duplicate_user_in_file(store: UserStore, path: Path) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(UserStoreError, match="duplicate user 'alice'"):
        UserStore(path)


def test_refuses_file_writable_by_others(store: UserStore, path: Path) -> None:
    path.chmod(0o620)
    with pytest.raises(UserStoreError, match="writable by group or others"):
        UserStore(path)
    assert store.reload_if_changed()  # chmod alone is noticed (ctime) and fails closed
    assert not store.verify_password("alice", "s3cret")
    path.chmod(0o602)
    with pytest.raises(UserStoreError, match="chmod 600"):
        UserStore(path)


def test_warns_when_readable_by_others(
    store: UserStore, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="outrider.auth.store"):
        reader = UserStore(path)
    assert reader.verify_password("alice", "s3cret")
    assert "readable by group or others" in caplog.text
    reader.add("dave", "pw")
    assert mode(path) == 0o600  # rewriting tightens it


def test_add_existing(store: UserStore) -> None:
    with pytest.raises(UserExistsError, match="already exists"):
        store.add("alice", "other")
    assert store.verify_password("alice", "s3cret")


def test_unknown_user_mutations(store: UserStore) -> None:
    with pytest.raises(UnknownUserError):
        store.delete("zed")
    with pytest.raises(UnknownUserError):
        store.set_password("zed", "pw")


@pytest.mark.parametrize("name", ["", "a" * 65, "a b", "tab\there", "nul\x00", "nbsp\u00a0x"])
def test_bad_usernames(path: Path, name: str) -> None:
    with pytest.raises(InvalidUserError):
        UserStore(path).add(name, "pw")
    assert not path.exists()


def test_good_usernames(path: Path) -> None:
    store = UserStore(path)
    for name in ["a" * 64, "user@example.com", "bj\u00f6rn", "a,b=c"]:
        store.add(name, "pw")
    assert len(UserStore(path)) == 4


@pytest.mark.parametrize(
    "sender", ["", "a b@c.d", "@", "a@", "a@b@c", "<a@b.c>", "a@.b", "a@b..c", "b.c."]
)
def test_bad_allowed_senders(path: Path, sender: str) -> None:
    with pytest.raises(InvalidUserError, match="invalid allowed sender"):
        UserStore(path).add("u", "pw", allowed_senders=[sender])


@pytest.mark.parametrize("rate", ["fast", "0/h", "100/", "100/x", "-1/h"])
def test_bad_rates(path: Path, rate: str) -> None:
    with pytest.raises(InvalidUserError):
        UserStore(path).add("u", "pw", max_msg_rate=rate)


def test_unlimited_rate_is_stored_as_none(path: Path) -> None:
    record = UserStore(path).add("u", "pw", max_msg_rate="unlimited")
    assert record.max_msg_rate is None


@pytest.mark.parametrize(
    ("sender", "allowed"),
    [
        ("alice@example.com", True),
        ("ALICE@Example.COM", True),
        ("bob@example.com", False),
        ("anyone@example.org", True),
        ("anyone@EXAMPLE.ORG", True),
        ("anyone@sub.example.org", False),
        ("anyone@example.org.", True),
        ("", False),
        ("<>", False),
        ("example.org", False),
    ],
)
def test_sender_allowed(store: UserStore, sender: str, allowed: bool) -> None:
    assert store.sender_allowed("alice", sender) is allowed


def test_sender_allowed_rules(path: Path) -> None:
    store = UserStore(path)
    store.add("any", "pw")
    store.add("null", "pw", allowed_senders=["<>", "@b.c"])
    assert store.sender_allowed("any", "x@y.z") and store.sender_allowed("any", "")
    assert store.sender_allowed("null", "") and store.sender_allowed("null", "u@B.C")
    assert not store.sender_allowed("null", "u@c")
    assert not store.sender_allowed("nobody", "x@y.z")


def test_concurrent_adds_lose_nothing(path: Path) -> None:
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            UserStore(path).add(f"user{i}", "pw")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(UserStore(path)) == 8
    assert [p.name for p in path.parent.iterdir()] == ["users"]  # no temp files left


def test_unknown_user_costs_a_hash(store: UserStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from outrider.auth import passwords

    calls: list[str] = []
    real = passwords._scrypt

    def counting(prepared: str, salt: bytes, params: passwords.ScryptParams) -> bytes:
        calls.append(prepared)
        return real(prepared, salt, params)

    monkeypatch.setattr(passwords, "_scrypt", counting)
    assert not store.verify_password("nobody", "guess")
    assert not store.verify_password("alice", "guess")
    assert calls == ["guess", "guess"]


def test_allowed_sender_domains_match_every_spelling_of_an_idn() -> None:
    from outrider.auth.store import _SenderPolicy

    rights = _SenderPolicy.build(("@Bücher.test", "@straße.test"))
    assert rights.allows("a@xn--bcher-kva.test")
    assert rights.allows("a@BÜCHER.test.")
    assert rights.allows("a@xn--strae-oqa.test")
    assert not rights.allows("a@strasse.test")  # IDNA 2008: another domain
