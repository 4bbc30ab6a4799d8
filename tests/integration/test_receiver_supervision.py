"""Receiver processes that die: the daemon replaces them and keeps serving.

A receiver killed with SIGKILL is replaced while its siblings (or, with one receiver,
the replacement) keep accepting mail on the port; one that keeps dying is replaced
after a growing back-off; the daemon gives up, with a non-zero exit status, only when
no receiver can be started at all. Run the way the daemon ships: ``outrider run`` as a
subprocess, receivers sharing the port with SO_REUSEPORT, on uvloop.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import time
from collections.abc import Callable
from functools import partial

import pytest

from tests.support.daemon import DaemonHandle, pid_gone, wait_until
from tests.support.smtp_server import ScriptedSmtpServer

SENDER = "a@sender.test"


def send(d: DaemonHandle, uid: str) -> None:
    content = f"From: {SENDER}\r\nSubject: {uid}\r\nMessage-ID: <{uid}@client.test>\r\n\r\nhi\r\n"
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        assert client.sendmail(SENDER, ["b@example.org"], content.encode()) == {}


def arrived(sink: ScriptedSmtpServer, uid: str) -> int:
    needle = f"\r\nMessage-ID: <{uid}@client.test>\r\n".encode()
    return sum(1 for m in sink.messages if needle in m.data)


def listening_again(d: DaemonHandle, pid: int) -> bool:
    return re.search(rf"receiver \d+ \(pid {pid}\) is listening", d.log_text()) is not None


def another_receiver(d: DaemonHandle, pid: int) -> bool:
    return any(child != pid for child in d.child_pids())


def replaced(d: DaemonHandle, old: list[int], dead: int, timeout: float = 20) -> list[int]:
    """Wait until ``dead`` is gone and as many receivers as ``old`` run again, every new one
    listening."""
    now: list[int] = []

    def complete() -> bool:
        nonlocal now
        now = d.child_pids()
        return (
            pid_gone(dead)
            and len(now) == len(old)
            and all(listening_again(d, pid) for pid in now if pid not in old)
        )

    wait_until(complete, timeout=timeout, what="a replacement receiver listening")
    return now


@pytest.mark.parametrize("receivers", [1, 2])
def test_a_killed_receiver_is_replaced_and_mail_keeps_flowing(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    d = make_daemon(receiver_processes=receivers)
    d.start()
    children = d.child_pids()
    assert len(children) == receivers
    victim = children[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: (
            re.search(rf"receiver \d \(pid {victim}\) was killed by SIGKILL", d.log_text())
            is not None
        ),
        what="the death logged",
    )
    assert d.proc is not None and d.proc.poll() is None, "the daemon must keep running"
    now = replaced(d, children, victim)
    assert victim not in now
    assert set(children) - {victim} <= set(now), "the other receivers are left alone"
    # The port serves: every session is accepted, whichever receiver the kernel picks.
    for i in range(6):
        send(d, f"after-kill-{i}")
    wait_until(
        lambda: all(arrived(sink, f"after-kill-{i}") == 1 for i in range(6)),
        what="delivery of mail accepted after the replacement",
    )
    log = d.log_text()
    assert "stopping: finishing in-flight work" not in log
    assert d.stop() == 0
    assert all(pid_gone(pid) for pid in now)


def test_siblings_serve_while_one_receiver_is_down(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(receiver_processes=2)
    d.start()
    first, second = d.child_pids()
    os.kill(first, signal.SIGKILL)
    # Once it is gone (connections queued on its socket at that moment are reset: that is
    # SO_REUSEPORT), the sibling serves every connection; no waiting for the replacement.
    wait_until(lambda: pid_gone(first), what="the killed receiver gone")
    for i in range(4):
        send(d, f"sibling-{i}")
    wait_until(lambda: all(arrived(sink, f"sibling-{i}") == 1 for i in range(4)), what="delivery")
    replaced(d, [first, second], first)
    assert second in d.child_pids()
    assert d.stop() == 0


def test_a_receiver_that_keeps_dying_is_restarted_with_back_off(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(receiver_processes=1)
    d.start()
    gaps: list[float] = []  # from the kill to the replacement's start
    for _ in range(4):
        (pid,) = d.child_pids()
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(partial(another_receiver, d, pid), what="a replacement")
        gaps.append(time.monotonic() - killed)
        replaced(d, [pid], pid)
    log = d.log_text()
    lines = [line for line in log.splitlines() if "was killed by SIGKILL" in line]
    assert len(lines) == 4, log
    # The first death is replaced at once, then the delay doubles: 0.5s, 1s, 2s.
    assert lines[0].endswith("; starting a replacement"), lines[0]
    for line, times, delay in zip(lines[1:], (2, 3, 4), ("0.5", "1.0", "2.0"), strict=True):
        assert f"({times} times in a row); starting a replacement in {delay}s" in line, line
    assert gaps[1] >= 0.5 and gaps[2] >= 1.0 and gaps[3] >= 2.0, gaps
    assert gaps[0] < gaps[3], gaps
    assert d.proc is not None and d.proc.poll() is None
    send(d, "after-back-off")
    wait_until(lambda: arrived(sink, "after-back-off") == 1, what="delivery")
    assert d.stop() == 0


def test_daemon_exits_non_zero_when_no_receiver_can_start(
    make_daemon: Callable[..., DaemonHandle],
) -> None:
    d = make_daemon(receiver_processes=1)
    d.start()
    # Replacements read the config file as they start: a broken one makes each of them
    # exit before listening. (The running daemon keeps its valid config.)
    d.edit_config('shutdown-timeout = "10s"', 'shutdown-timeout = "10x"')
    (pid,) = d.child_pids()
    os.kill(pid, signal.SIGKILL)
    assert d.proc is not None
    code = d.proc.wait(timeout=90)
    d.proc = None
    log = d.log_text()
    assert code != 0, log
    assert "replacements exited before listening; stopping" in log, log
    failed = re.findall(r"receiver 0 \(pid \d+\) exited with status 1 before listening", log)
    assert len(failed) == 5, log
