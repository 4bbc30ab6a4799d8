"""Run the real ``outrider run`` daemon as a subprocess for integration tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_STARTED = re.compile(r"outrider\.daemon: outrider \S+ started: ")
_RECEIVER_UP = re.compile(r"\[receiver-(\d+)\] outrider\.inbound: listening on ")


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``pred`` every 50 ms; AssertionError naming ``what`` when it stays false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    if pred():
        return
    raise AssertionError(f"{what}: not met within {timeout}s")


def port_refuses(host: str, port: int) -> bool:
    """True when nothing accepts connections on ``host:port`` any more."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return False
    except OSError:
        return True


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (it does not exist, or is a zombie awaiting its reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat[stat.rfind(")") + 2 :].startswith(("Z", "X"))


def child_pids(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc), e.g. the daemon's receiver processes."""
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            children.append(int(entry.name))
    return children


def wait_port(
    host: str, port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode} before listening")
        try:
            # Longer than the pregreet delay a client outside relay-networks gets.
            with socket.create_connection((host, port), timeout=2.0) as s:
                s.recv(512)
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port}")


@dataclass
class DaemonHandle:
    """A running daemon; its stderr goes to ``log_path`` for debugging failed tests."""

    workdir: Path
    config_path: Path
    host: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    receiver_processes: int = 0
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "daemon.log"

    @property
    def spool_dir(self) -> Path:
        return self.workdir / "spool"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    def start(self, *, wait: bool = True) -> None:
        """Start the daemon; with ``wait``, return once it is fully up (see ``wait_ready``)."""
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "outrider",
                "run",
                "-c",
                str(self.config_path),
                "--log-level",
                "DEBUG",
            ],
            cwd=self.workdir,
            stdout=log,
            stderr=log,
            env=env,
        )
        log.close()
        if wait:
            wait_port(self.host, self.port, proc=self.proc)
            self.wait_ready(log_offset)

    def wait_ready(self, log_offset: int = 0, timeout: float = 20.0) -> None:
        """Wait until this run logged its start-up line and every receiver its listener.

        The port accepting is not enough: with receiver processes it opens before the main
        process has installed its signal handlers, and while siblings still load the config.
        """
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text_since(log_offset)
            receivers = set(_RECEIVER_UP.findall(text))
            if _STARTED.search(text) and len(receivers) >= self.receiver_processes:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode} during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"daemon not ready; log since start:\n{text[-3000:]}")
            time.sleep(0.02)

    def log_text_since(self, offset: int) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def child_pids(self) -> list[int]:
        """The receiver processes of the running daemon."""
        return child_pids(self.pid)

    def spool_files(self, *, empty: bool = False) -> list[str]:
        """Message files (and leftover temp files) in the spool, quarantine included;
        ``empty``: also the empty files of names reserved to store into (spool.names).
        Not the files of finished messages waiting in the recycle bin (spool.recycle)."""
        if not self.spool_dir.exists():
            return []
        found = []
        for p in self.spool_dir.rglob("*"):
            if any(part.startswith(".") for part in p.relative_to(self.spool_dir).parts):
                continue
            try:  # the running daemon may remove a file between the listing and its stat
                info = p.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode) and (empty or info.st_size):
                found.append(str(p.relative_to(self.spool_dir)))
        return sorted(found)

    def edit_config(self, old: str, new: str) -> None:
        """Replace one snippet of the config file; fails loudly when it is not there."""
        text = self.config_path.read_text()
        assert old in text, f"{old!r} not in the config"
        self.config_path.write_text(text.replace(old, new, 1))

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self.proc = None
        return code

    def kill(self) -> None:
        """kill -9: the crash case."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def accounting_rows(self) -> list[dict[str, str]]:
        import csv

        rows: list[dict[str, str]] = []
        for path in sorted(self.log_dir.glob("acct-*.csv")):
            with open(path, newline="") as fh:
                rows.extend(csv.DictReader(fh))
        return rows


def write_config(
    workdir: Path,
    *,
    port: int,
    dns: tuple[str, int],
    extra: str = "",
    relay_domains: tuple[str, ...] = ("example.org",),
    receiver_processes: int = 0,
    host: str = "127.0.0.1",
    domain_defaults: str = "",
    shutdown_timeout: str = "10s",
    relay_networks: tuple[str, ...] = ("127.0.0.0/8",),
) -> DaemonHandle:
    """A config for tests: loopback listener, loopback DNS, short timeouts and retries."""
    workdir.mkdir(parents=True, exist_ok=True)
    domains = ", ".join(f'"{d}"' for d in relay_domains)
    networks = ", ".join(f'"{n}"' for n in relay_networks)
    text = f"""
[server]
hostname = "mta.outrider.test"
spool-dir = "spool"
log-dir = "log"
shutdown-timeout = "{shutdown_timeout}"
receiver-processes = {receiver_processes}

[dns]
nameservers = ["{dns[0]}:{dns[1]}"]
timeout = "2s"

[[listener]]
address = "{host}:{port}"
relay-networks = [{networks}]
max-message-size = "1M"
max-rcpt-per-message = 100

[relay]
domains = [{domains}]

[domain."*"]
retry-after = ["1s"]
bounce-after = "1h"
connect-timeout = "2s"
smtp-greeting-timeout = "3s"
smtp-command-timeout = "3s"
smtp-data-init-timeout = "3s"
smtp-data-block-timeout = "3s"
smtp-data-termination-timeout = "3s"
connection-idle-timeout = "0.5s"
{domain_defaults}
{extra}
"""
    config_path = workdir / "outrider.toml"
    config_path.write_text(text)
    return DaemonHandle(
        workdir=workdir,
        config_path=config_path,
        host=host,
        port=port,
        receiver_processes=receiver_processes,
    )


def control(
    handle: DaemonHandle, request: dict[str, object], timeout: float = 5.0
) -> dict[str, object]:
    """One request to the daemon's control socket (JSON lines)."""
    import json

    path = handle.workdir / "var" / "state" / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    reply: dict[str, object] = json.loads(data)
    return reply


SHAPING_BODY = b"Subject: shaping\r\n\r\nbody\r\n"

# A pattern list named "throttle" that puts a queue in backoff on "rate limited".
THROTTLE_PATTERNS = (
    '[smtp-pattern-list.throttle]\nrules = [{ reply = "rate limited", action = "mode=backoff" }]\n'
)
THROTTLED_REPLY = "421 4.7.28 Our system has detected rate limited traffic"


def inject(handle: DaemonHandle, rcpts: list[str], count: int, *, headers: bytes = b"") -> None:
    """``count`` one-recipient messages (cycling through ``rcpts``) over 4 parallel sessions."""
    import smtplib
    import threading

    def worker(indexes: range) -> None:
        with smtplib.SMTP(handle.host, handle.port, timeout=20) as s:
            for i in indexes:
                s.sendmail("s@sender.test", [rcpts[i % len(rcpts)]], headers + SHAPING_BODY)

    step = (count + 3) // 4
    threads = [
        threading.Thread(target=worker, args=(range(i, min(count, i + step)),))
        for i in range(0, count, step)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def rows(handle: DaemonHandle, kind: str) -> list[dict[str, str]]:
    """Accounting rows of one record type ("d", "b", "t", "q")."""
    return [r for r in handle.accounting_rows() if r["type"] == kind]
