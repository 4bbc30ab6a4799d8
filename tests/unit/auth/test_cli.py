"""``outrider user`` in-process: password prompts, messages and exit codes."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from outrider.auth.store import UserStore
from outrider.cli import main


@pytest.fixture
def users(tmp_path: Path) -> Path:
    return tmp_path / "users"


def prompts(monkeypatch: pytest.MonkeyPatch, *answers: str) -> list[str]:
    asked: list[str] = []
    replies: Iterator[str] = iter(answers)

    def fake_getpass(prompt: str = "Password: ") -> str:
        asked.append(prompt)
        try:
            return next(replies)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    return asked


def test_add_with_prompt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], users: Path
) -> None:
    asked = prompts(monkeypatch, "pw1", "pw1")
    assert main(["user", "add", "alice", "--users-file", str(users)]) == 0
    assert asked == ["Password: ", "Repeat password: "]
    assert "added user alice" in capsys.readouterr().out
    assert UserStore(users).verify_password("alice", "pw1")


def test_add_creates_a_missing_directory_with_mode_0700(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The first "outrider user add" on a fresh install: nothing made the directory yet.
    users = tmp_path / "etc" / "outrider" / "users"
    existing = stat.S_IMODE(tmp_path.stat().st_mode)
    stdin(monkeypatch, "pw\n")
    old_umask = os.umask(0o022)
    try:
        assert main(["user", "add", "alice", "--password-stdin", "--users-file", str(users)]) == 0
    finally:
        os.umask(old_umask)
    assert "added user alice" in capsys.readouterr().out
    for directory in (users.parent, users.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert UserStore(users).verify_password("alice", "pw")
    assert stat.S_IMODE(tmp_path.stat().st_mode) == existing  # an existing one is left alone


def test_prompt_mismatch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], users: Path
) -> None:
    prompts(monkeypatch, "pw1", "pw2")
    assert main(["user", "add", "alice", "--users-file", str(users)]) == 1
    assert "passwords do not match" in capsys.readouterr().err
    assert not users.exists()


@pytest.mark.parametrize("answers", [(), ("",)])
def test_prompt_no_password(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    users: Path,
    answers: tuple[str, ...],
) -> None:
    prompts(monkeypatch, *answers)
    assert main(["user", "add", "alice", "--users-file", str(users)]) == 1
    assert "password" in capsys.readouterr().err


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_password_stdin_takes_one_line(monkeypatch: pytest.MonkeyPatch, users: Path) -> None:
    stdin(monkeypatch, "line one \r\nline two\n")
    assert main(["user", "add", "u", "--password-stdin", "--users-file", str(users)]) == 0
    assert UserStore(users).verify_password("u", "line one ")


def test_password_stdin_empty(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], users: Path
) -> None:
    stdin(monkeypatch, "\n")
    assert main(["user", "add", "u", "--password-stdin", "--users-file", str(users)]) == 1
    assert "no password on standard input" in capsys.readouterr().err


def test_passwd_unknown_user_fails_before_prompting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], users: Path
) -> None:
    asked = prompts(monkeypatch, "x", "x")
    assert main(["user", "passwd", "ghost", "--users-file", str(users)]) == 1
    assert asked == []
    assert "no such user 'ghost'" in capsys.readouterr().err


def test_add_existing_fails_before_prompting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], users: Path
) -> None:
    UserStore(users).add("alice", "pw")
    asked = prompts(monkeypatch, "x", "x")
    assert main(["user", "add", "alice", "--users-file", str(users)]) == 1
    assert asked == []
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "bad name"], "whitespace"),
        (["add", "u", "--allowed-sender", "not an address"], "invalid allowed sender"),
        (["add", "u", "--max-msg-rate", "lots"], "invalid rate"),
        (["del", "ghost"], "no such user 'ghost'"),
    ],
)
def test_errors(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    users: Path,
    args: list[str],
    message: str,
) -> None:
    stdin(monkeypatch, "pw\n")
    assert (
        main(
            ["user", *args, "--users-file", str(users)]
            + (["--password-stdin"] if args[0] == "add" else [])
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("outrider user: ") and message in err


def test_no_users_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["user", "list"]) == 1
    assert "give -c CONFIG or --users-file PATH" in capsys.readouterr().err


def test_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[server\n")
    assert main(["user", "list", "-c", str(config)]) == 1
    assert str(config) in capsys.readouterr().err


def test_unreadable_users_file(users: Path, capsys: pytest.CaptureFixture[str]) -> None:
    users.write_text("{}\n")
    users.chmod(0o666)
    assert main(["user", "list", "--users-file", str(users)]) == 1
    assert "writable by group or others" in capsys.readouterr().err


def test_list(users: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["user", "list", "--users-file", str(users)]) == 0
    assert capsys.readouterr().out == "no users\n"
    store = UserStore(users)
    store.add("bob", "pw", max_msg_rate="100/h")
    store.add("alice", "pw", allowed_senders=["alice@example.com", "example.org"])
    assert main(["user", "list", "--users-file", str(users)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "USER   ALLOWED SENDERS                 RATE",
        "alice  alice@example.com, example.org  unlimited",
        "bob    (any)                           100/h",
    ]
