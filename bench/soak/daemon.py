"""The daemon under test: ``outrider run`` as a subprocess, killed with -9 and restarted.

The soak process makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``), so the
receiver processes of a killed daemon are re-parented to it: it can see whether they
really died with their parent (``PR_SET_PDEATHSIG``), kill any that did not, by PID, and
reap them, so no zombie's temp file looks alive to the next start's spool recovery.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.daemon import child_pids, pid_gone, port_refuses

PR_SET_CHILD_SUBREAPER = 36
_STARTED = re.compile(r"outrider\.daemon: outrider \S+ started: ")
_RECEIVER_UP = re.compile(r"\[receiver-(\d+)\] outrider\.inbound: listening on ")
_PROBLEM = re.compile(r"\S+ \S+ (WARNING|ERROR|CRITICAL) ")


def become_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    """A ``/proc/<pid>/status`` memory field in KiB; 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass(frozen=True)
class Kill:
    at: float  # time.time() just before SIGKILL
    pid: int
    receivers: tuple[int, ...]
    orphans: tuple[int, ...]  # receivers still running 5 s after their parent died
    peak_rss_kib: int  # VmHWM of the main process at the kill
    restart_seconds: float  # from the kill to the new daemon being ready


@dataclass
class Daemon:
    outrider: str
    config_path: Path
    workdir: Path
    ports: tuple[int, ...]
    receivers: int
    log_path: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = None
    kills: list[Kill] = field(default_factory=list)
    starts: int = 0
    max_rss_main_kib: int = 0
    max_rss_total_kib: int = 0
    _sampler: threading.Thread | None = None
    _sampling: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "daemon.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until the start-up line and every receiver's listeners are logged."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.outrider, "run", "-c", str(self.config_path), "--log-level", "INFO"],
                cwd=self.workdir,
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            text = self._log_since(offset)
            up = set(_RECEIVER_UP.findall(text))
            if _STARTED.search(text) and len(up) >= self.receivers:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode} during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"daemon not ready after {timeout}s:\n{text[-3000:]}")
            time.sleep(0.05)

    def kill9_and_restart(self) -> Kill:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon died on its own (exit {self.proc.returncode})")
        receivers = tuple(child_pids(self.pid))
        peak = rss_kib(self.pid, "VmHWM")
        self.max_rss_main_kib = max(self.max_rss_main_kib, peak)
        at = time.time()
        pid = self.pid
        self.proc.kill()
        self.proc.wait()
        orphans = self._reap(receivers)
        deadline = time.monotonic() + 10
        while not all(port_refuses("127.0.0.1", p) for p in self.ports):
            if time.monotonic() > deadline:
                raise RuntimeError(f"ports {self.ports} still accept after the kill")
            time.sleep(0.05)
        self.start()
        kill = Kill(at, pid, receivers, orphans, peak, time.time() - at)
        self.kills.append(kill)
        return kill

    def _reap(self, receivers: tuple[int, ...]) -> tuple[int, ...]:
        """Wait for the receivers to die (PDEATHSIG); kill survivors by PID; reap all."""
        deadline = time.monotonic() + 5
        while not all(pid_gone(p) for p in receivers) and time.monotonic() < deadline:
            time.sleep(0.02)
        orphans = tuple(p for p in receivers if not pid_gone(p))
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        for pid in receivers:
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)  # ours: we are the subreaper
                except ChildProcessError:
                    done = pid  # reaped by someone else, or never ours
                if done == pid or not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.02)
        return orphans

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; the exit status (-9 if it had to be killed)."""
        if self.proc is None:
            return 0
        receivers = tuple(child_pids(self.pid))
        self.max_rss_main_kib = max(self.max_rss_main_kib, rss_kib(self.pid, "VmHWM"))
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = -9
        self._reap(receivers)
        self.proc = None
        return code

    def start_sampling(self, every: float = 1.0) -> None:
        """Track the largest RSS of the main process and of main + receivers."""

        def sample() -> None:
            while not self._sampling.wait(every):
                proc = self.proc
                if proc is None or proc.poll() is not None:
                    continue
                main = rss_kib(proc.pid)
                total = main + sum(rss_kib(p) for p in child_pids(proc.pid))
                self.max_rss_main_kib = max(self.max_rss_main_kib, main)
                self.max_rss_total_kib = max(self.max_rss_total_kib, total)

        self._sampler = threading.Thread(target=sample, name="soak-rss", daemon=True)
        self._sampler.start()

    def stop_sampling(self) -> None:
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(5)

    def _log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def log_problems(self, limit: int = 10) -> tuple[int, list[str]]:
        """How many WARNING, ERROR, CRITICAL or traceback lines the daemon logged; the first."""
        if not self.log_path.exists():
            return 0, []
        count, first = 0, list[str]()
        with open(self.log_path, errors="replace") as fh:
            for line in fh:
                if _PROBLEM.match(line) or line.startswith("Traceback"):
                    count += 1
                    if len(first) < limit:
                        first.append(line.rstrip("\n")[:300])
        return count, first

    def log_lines(self, needle: str, limit: int = 20) -> list[str]:
        """Daemon log lines containing ``needle`` (for the report on a failure)."""
        if not self.log_path.exists():
            return []
        with open(self.log_path, errors="replace") as fh:
            return [line.rstrip("\n") for line in fh if needle in line][:limit]
