"""sd_notify: datagrams to $NOTIFY_SOCKET (a path or an abstract name), nothing without it."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outrider.runtime import sd_notify


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def fields(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_ready_with_a_one_line_status(receiver: socket.socket) -> None:
    assert sd_notify.ready("2 listener(s),\n1 receiver")
    assert fields(receiver) == {"READY": "1", "STATUS": "2 listener(s), 1 receiver"}


def test_reloading_says_when_on_the_monotonic_clock(receiver: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sd_notify.reloading()
    got = fields(receiver)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert got["RELOADING"] == "1"
    assert before <= int(got["MONOTONIC_USEC"]) <= after


def test_stopping(receiver: socket.socket) -> None:
    assert sd_notify.stopping("stopping: finishing in-flight work")
    assert fields(receiver)["STOPPING"] == "1"


def test_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"outrider-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify.notify("READY=1")
        assert sock.recv(100) == b"READY=1"


def test_nothing_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sd_notify.ready("x")
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")  # a VM's address: not ours to use
    assert not sd_notify.ready("x")


def test_a_socket_nobody_listens_on_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert not sd_notify.stopping()
