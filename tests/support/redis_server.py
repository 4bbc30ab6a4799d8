"""A real ``redis-server`` on a free loopback port, for the cluster tests.

No persistence (``--save "" --appendonly no``), its own directory, stopped by PID.
Tests that need it are skipped when the Debian package ``redis-server`` is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import free_port, pid_gone

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class RedisServer:
    """One redis-server process; :meth:`stop` and :meth:`start` again on the same port."""

    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--protected-mode", "no",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert pid_gone(proc.pid)

    def command(self, *words: str) -> bytes:
        """One command over a raw socket (no client library needed): the raw reply."""
        request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(request.encode())
            time.sleep(0.05)
            return s.recv(65536)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip("redis-server is not installed (make system-deps)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which the test may stop and start."""
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip("redis-server is not installed (make system-deps)")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def redis_throttle(url: str, *, prefix: str, node: str = "n1", lease_time: float = 15.0) -> Any:
    """A :class:`RedisThrottle` marked up without a heartbeat (its connection opens on
    the first call, in the test's event loop); a fresh ``prefix`` isolates its keys."""
    from outrider.cluster.client import ClusterClient, ClusterOptions
    from outrider.cluster.throttle import RedisThrottle

    options = ClusterOptions(url, node=node, prefix=prefix, lease_time=lease_time, timeout=1.0)
    client = ClusterClient(options)
    client.up = client.ever_up = True
    return RedisThrottle(client)
