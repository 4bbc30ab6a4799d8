"""``outrider user`` run as a subprocess, the way an operator runs it."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from outrider.auth.store import UserStore

PASSWORD = "Tr0ub4dor&3 with spaces"

CONFIG = """\
[server]
hostname = "mta.test"
spool-dir = "spool"

[auth]
users-file = "conf-users"

[[listener]]
address = "127.0.0.1:2525"
"""


def user_cli(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outrider", "user", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_add_passwd_list_del(tmp_path: Path) -> None:
    users = tmp_path / "users"
    file_args = ("--users-file", str(users))
    result = user_cli(
        "add",
        "alice",
        "--password-stdin",
        "--allowed-sender",
        "alice@example.com",
        "--allowed-sender",
        "example.org",
        "--max-msg-rate",
        "100/h",
        *file_args,
        cwd=tmp_path,
        stdin=PASSWORD + "\n",
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    text = users.read_text()
    assert PASSWORD not in text and "Tr0ub4dor" not in text
    (record,) = (json.loads(line) for line in text.splitlines() if not line.startswith("#"))
    assert record["user"] == "alice" and record["password"].startswith("$scrypt$n=32768,r=8,p=1$")

    store = UserStore(users)
    assert store.verify_password("alice", PASSWORD)
    assert store.sender_allowed("alice", "x@example.org")

    result = user_cli("add", "alice", "--password-stdin", *file_args, cwd=tmp_path, stdin="x\n")
    assert result.returncode == 1 and "already exists" in result.stderr

    result = user_cli(
        "passwd", "alice", "--password-stdin", *file_args, cwd=tmp_path, stdin="n3w\n"
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert store.reload_if_changed()
    assert store.verify_password("alice", "n3w") and not store.verify_password("alice", PASSWORD)
    assert stat.S_IMODE(users.stat().st_mode) == 0o600

    result = user_cli("list", *file_args, cwd=tmp_path)
    assert result.returncode == 0
    assert "alice" in result.stdout and "example.org" in result.stdout and "100/h" in result.stdout
    assert "$scrypt$" not in result.stdout and "stored" not in result.stdout

    result = user_cli("del", "alice", *file_args, cwd=tmp_path)
    assert result.returncode == 0
    result = user_cli("del", "alice", *file_args, cwd=tmp_path)
    assert result.returncode == 1 and "no such user 'alice'" in result.stderr
    assert store.reload_if_changed() and store.get("alice") is None


def test_users_file_from_config(tmp_path: Path) -> None:
    config = tmp_path / "outrider.toml"
    config.write_text(CONFIG)
    result = user_cli(
        "add", "bob", "--password-stdin", "-c", str(config), cwd=tmp_path, stdin="pw\n"
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert UserStore(tmp_path / "conf-users").verify_password("bob", "pw")

    override = tmp_path / "override"
    result = user_cli(
        "add",
        "bob",
        "--password-stdin",
        "-c",
        str(config),
        "--users-file",
        str(override),
        cwd=tmp_path,
        stdin="pw\n",
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert override.exists()


def test_errors_exit_1(tmp_path: Path) -> None:
    users = tmp_path / "users"
    result = user_cli("add", "bad name", "--password-stdin", "--users-file", str(users),
                      cwd=tmp_path, stdin="pw\n")  # fmt: skip
    assert result.returncode == 1 and "whitespace" in result.stderr
    result = user_cli("add", "u", "--password-stdin", "--users-file", str(users), cwd=tmp_path)
    assert result.returncode == 1 and "no password on standard input" in result.stderr
    assert not users.exists()
