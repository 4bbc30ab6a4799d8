"""The ``outrider`` command line, run as a subprocess the way an operator runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import outrider
from tests.support.daemon import DaemonHandle

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "outrider.toml"
PROBLEM = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<key>\S+): (?P<message>.+)$")

# Line numbers matter: the expected problems below name them.
BAD_CONFIG = """\
# a config with several mistakes
[server]
hostname = "mta.test"
spool-dirr = "spool"

[[listener]]
address = "127.0.0.1:not-a-port"

[domain."*"]
retry-after = [
  "5m",
  "1x",
]
bounce-after = "soon"
"""
BAD_CONFIG_PROBLEMS = {
    ("server.spool-dirr", 4): "unknown key 'spool-dirr' (did you mean 'spool-dir'?)",
    ("listener[0].address", 7): "'not-a-port'",
    ('domain."*".retry-after[1]', 12): "invalid duration '1x'",
    ('domain."*".bounce-after', 14): "invalid duration 'soon'",
}


def outrider_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outrider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def parse_problems(stderr: str, path: Path) -> dict[tuple[str, int], str]:
    """Every stderr line must be one ``FILE:LINE: key.path: message`` problem for ``path``."""
    problems: dict[tuple[str, int], str] = {}
    for line in stderr.splitlines():
        match = PROBLEM.match(line)
        assert match is not None, f"not a FILE:LINE: key: message line: {line!r}"
        assert match["file"] == str(path), line
        problems[(match["key"], int(match["line"]))] = match["message"]
    return problems


def assert_bad_config_reported(stderr: str, path: Path) -> None:
    problems = parse_problems(stderr, path)
    assert set(problems) == set(BAD_CONFIG_PROBLEMS), stderr
    for where, fragment in BAD_CONFIG_PROBLEMS.items():
        assert fragment in problems[where], f"{where}: {problems[where]!r}"


def test_version(tmp_path: Path) -> None:
    result = outrider_cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"outrider {outrider.__version__}"


def test_check_config_accepts_the_example(tmp_path: Path) -> None:
    # Without the certificate `make run` generates, the submission listener is refused.
    result = outrider_cli("check-config", "-c", str(EXAMPLE), cwd=tmp_path)
    assert result.returncode == 1
    assert "tls-cert" in result.stderr
    assert list(tmp_path.iterdir()) == [], "checking a config must not create its directories"
    made = outrider_cli(
        "gen-cert",
        "--cert",
        "var/tls/cert.pem",
        "--key",
        "var/tls/key.pem",
        "--hostname",
        "mta.example.test",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    result = outrider_cli("check-config", "-c", str(EXAMPLE), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{EXAMPLE}: OK"
    assert result.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["var"]
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == ["tls"]


def test_check_config_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD_CONFIG)
    result = outrider_cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert_bad_config_reported(result.stderr, path)


def test_check_config_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[server]\nhostname = "mta.test"\nspool-dir = "unterminated\n')
    result = outrider_cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 1
    [(key, line)] = parse_problems(result.stderr, path)
    assert (key, line) == ("syntax", 3), result.stderr
    assert re.search(r"\(column \d+\)$", result.stderr.strip()), result.stderr


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_missing_config_file(tmp_path: Path, command: str) -> None:
    path = tmp_path / "nowhere.toml"
    result = outrider_cli(command, "-c", str(path), cwd=tmp_path)
    assert result.returncode == (78 if command == "run" else 1)  # run: EX_CONFIG
    assert str(path) in result.stderr
    assert "cannot read" in result.stderr and "No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD_CONFIG)
    result = outrider_cli("run", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 78  # EX_CONFIG: systemd's RestartPreventExitStatus=78
    assert_bad_config_reported(result.stderr, path)
    assert not (tmp_path / "spool").exists(), "nothing may start on a bad config"


def test_second_daemon_on_the_same_spool_is_refused(
    make_daemon: Callable[..., DaemonHandle],
) -> None:
    first = make_daemon()
    first.start()
    second = DaemonHandle(
        workdir=first.workdir, config_path=first.config_path, host=first.host, port=first.port
    )
    second.log_path = first.workdir / "second.log"
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(30) == 1
    assert "is in use by another outrider" in second.log_text()
    assert first.stop() == 0


def test_listen_address_in_use_is_a_clear_error(
    make_daemon: Callable[..., DaemonHandle],
) -> None:
    import socket

    d = make_daemon(receiver_processes=1)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # would be shared silently
        taken.bind((d.host, d.port))
        taken.listen()
        d.start(wait=False)
        assert d.proc is not None
        assert d.proc.wait(30) == 1
    assert f"cannot listen on {d.host}:{d.port}: Address already in use" in d.log_text()
