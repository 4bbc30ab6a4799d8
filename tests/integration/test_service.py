"""Running as a systemd service: sd_notify readiness, reload and stop from the real daemon
(``outrider run`` with a receiver process, as shipped), the default config path and
``$OUTRIDER_CONFIG``, exit status 78 on a bad config.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonHandle

DEFAULT_CONFIG = Path("/etc/outrider/outrider.toml")


class NotifyListener:
    """The systemd side: a datagram socket in the abstract namespace, as $NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.name = f"outrider-test-{os.getpid()}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name.encode())

    @property
    def env_value(self) -> str:
        return "@" + self.name

    def next(self, timeout: float = 30.0) -> dict[str, str]:
        """The next message's ``KEY=value`` assignments."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n") if line)

    def none_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(4096)
        except TimeoutError:
            return True
        return False


@pytest.fixture
def notify(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    listener = NotifyListener()
    monkeypatch.setenv("NOTIFY_SOCKET", listener.env_value)  # the daemon inherits it
    yield listener
    listener.sock.close()


def outrider(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outrider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def accepts(d: DaemonHandle) -> bool:
    """An SMTP client gets the greeting right now."""
    with socket.create_connection((d.host, d.port), timeout=5) as conn:
        return conn.recv(512).startswith(b"220")


def test_ready_reload_and_stop_reach_systemd(
    make_daemon: Callable[..., DaemonHandle], notify: NotifyListener
) -> None:
    d = make_daemon(receiver_processes=1)
    d.start(wait=False)
    ready = notify.next()
    # READY=1 comes once the receiver process accepts: the port answers at once.
    assert ready["READY"] == "1", ready
    assert "1 listener(s), 1 receiver process(es)" in ready["STATUS"]
    assert accepts(d)
    assert "started: 1 listener(s)" in d.log_text()

    reply = outrider("reload", "-c", str(d.config_path), cwd=d.workdir)
    assert reply.returncode == 0, reply.stderr
    reloading = notify.next()
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0, reloading
    again = notify.next()
    assert again["READY"] == "1" and again["STATUS"].startswith("configuration reloaded")

    good = d.config_path.read_text()
    d.edit_config('shutdown-timeout = "10s"', 'shutdown-timeout = "never"')
    reply = outrider("reload", "-c", str(d.config_path), cwd=d.workdir)
    assert reply.returncode == 1 and "reload refused" in reply.stderr
    assert notify.next()["RELOADING"] == "1"
    refused = notify.next()  # systemd must not wait for a reload that will not come
    assert refused["READY"] == "1" and "reload refused" in refused["STATUS"], refused
    d.config_path.write_text(good)

    assert notify.none_within(0.3)
    d.signal(signal.SIGTERM)
    assert notify.next()["STOPPING"] == "1"
    assert d.stop() == 0

    # The daemon log is also in <log-dir>/outrider.log, from both processes (text by default).
    text = (d.log_dir / "outrider.log").read_text()
    assert " INFO [delivery] outrider.daemon: outrider " in text
    assert " INFO [receiver-0] outrider.inbound: listening on " in text
    assert "INFO [delivery] outrider.daemon: stopped" in text


def test_without_notify_socket_nothing_is_sent(
    make_daemon: Callable[..., DaemonHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside systemd: no socket named, none used (the daemon runs as before)."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    d = make_daemon(receiver_processes=0)
    d.start()
    assert accepts(d)
    assert d.stop() == 0
    assert "sd_notify" not in d.log_text()


def test_run_exits_78_on_a_bad_config_and_check_config_1(tmp_path: Path) -> None:
    path = tmp_path / "outrider.toml"
    path.write_text(
        '[server]\nhostname = "mta.test"\nshutdown-timeout = "never"\n'
        '[[listener]]\naddress = "127.0.0.1:2525"\n'
    )
    run = outrider("run", "-c", str(path), cwd=tmp_path)
    assert run.returncode == 78, run.stderr  # EX_CONFIG: RestartPreventExitStatus=78
    assert run.stderr.startswith(f"{path}:3: server.shutdown-timeout: invalid duration 'never'")
    assert len(run.stderr.splitlines()) == 1
    check = outrider("check-config", "-c", str(path), cwd=tmp_path)
    assert check.returncode == 1
    assert check.stderr == run.stderr


def test_outrider_config_names_the_file_when_c_is_not_given(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('[server]\nhostname = "mta.test"\n[[listener]]\naddress = "127.0.0.1:2525"\n')
    env = {**os.environ, "OUTRIDER_CONFIG": str(path)}
    check = outrider("check-config", cwd=tmp_path, env=env)
    assert (check.returncode, check.stdout.strip()) == (0, f"{path}: OK"), check.stderr
    # -c wins over the variable
    other = tmp_path / "other.toml"
    other.write_text("[server]\nbogus = 1\n")
    check = outrider("check-config", "-c", str(other), cwd=tmp_path, env=env)
    assert check.returncode == 1 and str(other) in check.stderr


@pytest.mark.parametrize(
    ("command", "status"),
    [(["run"], 78), (["check-config"], 1), (["show", "status"], 1), (["user", "list"], 1)],
)
def test_a_missing_default_config_is_a_clear_error(
    tmp_path: Path, command: list[str], status: int
) -> None:
    env = {**os.environ, "OUTRIDER_CONFIG": str(tmp_path / "missing.toml")}
    result = outrider(*command, cwd=tmp_path, env=env)
    assert result.returncode == status
    hint = (
        " to name the users file: give -c CONFIG or --users-file PATH, or set OUTRIDER_CONFIG"
        if command[0] == "user"
        else "; give -c FILE or set OUTRIDER_CONFIG"
    )
    assert result.stderr.strip() == (
        f"outrider{' user' if command[0] == 'user' else ''}: no configuration file at "
        f"{tmp_path / 'missing.toml'} (from $OUTRIDER_CONFIG){hint}"
    )
    if DEFAULT_CONFIG.exists():
        return  # a machine with Outrider installed: its file is the default
    env.pop("OUTRIDER_CONFIG")
    result = outrider(*command, cwd=tmp_path, env=env)
    assert result.returncode == status
    assert f"no configuration file at {DEFAULT_CONFIG} (the default)" in result.stderr


def test_user_with_users_file_needs_no_config(tmp_path: Path) -> None:
    env = {**os.environ, "OUTRIDER_CONFIG": str(tmp_path / "missing.toml")}
    users = tmp_path / "users"
    result = outrider("user", "list", "--users-file", str(users), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
