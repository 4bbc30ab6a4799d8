"""Crash safety: kill -9 the daemon while clients inject; nothing acknowledged is lost.

A client that got ``250`` for a message has been promised delivery. These tests kill the
daemon (and with it its receiver processes) at random moments under load, restart it,
and check that every acknowledged message reaches the sink at least once. Messages that
did not get a 250 may or may not arrive; duplicates are allowed, losses are not.
"""

from __future__ import annotations

import functools
import random
import re
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.daemon import DaemonHandle, pid_gone, port_refuses, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

SENDER = "a@sender.test"
RCPT = "b@example.org"
WORKERS = 3  # concurrent client connections
PER_CONNECTION = 5  # messages per SMTP session before QUIT and a new connection
KILLS = 4
MIN_ACKED = 30  # below this the run did not exercise anything: fail rather than pass vacuously
_ID_RE = re.compile(rb"^Message-ID: <(crash-[0-9]+-[0-9]+)@client\.test>\r$", re.M | re.I)
_FILLER = b"".join(b"line %03d of the body, to make DATA last a little\r\n" % i for i in range(60))


def message(uid: str) -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {RCPT}\r\nSubject: {uid}\r\n"
        f"Message-ID: <{uid}@client.test>\r\n\r\n".encode()
        + _FILLER
    )


def delivered_ids(sink: ScriptedSmtpServer) -> set[str]:
    ids: set[str] = set()
    for msg in sink.messages:
        ids.update(m.decode() for m in _ID_RE.findall(msg.data))
    return ids


@dataclass
class Injector:
    """Client threads that send continuously and remember each message answered 250."""

    host: str
    port: int
    acked: set[str] = field(default_factory=set)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, workers: int = WORKERS) -> None:
        for worker in range(workers):
            thread = threading.Thread(target=self._run, args=(worker,), name=f"inject-{worker}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> set[str]:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
            assert not thread.is_alive(), "an injector thread is stuck"
        with self._lock:
            return set(self.acked)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _run(self, worker: int) -> None:
        seq = 0
        while not self._stop.is_set():
            try:
                with smtplib.SMTP(self.host, self.port, timeout=5) as client:
                    for _ in range(PER_CONNECTION):
                        if self._stop.is_set():
                            break
                        uid = f"crash-{worker}-{seq}"
                        seq += 1
                        refused = client.sendmail(SENDER, [RCPT], message(uid))
                        if not refused:  # sendmail returned: the final reply was 250
                            with self._lock:
                                self.acked.add(uid)
            except (smtplib.SMTPException, OSError):
                with self._lock:
                    self.failures += 1
                self._stop.wait(0.05)


def all_gone(pids: list[int]) -> bool:
    return all(pid_gone(pid) for pid in pids)


def crash_repeatedly(d: DaemonHandle, rng: random.Random, receivers: int, seed: int) -> list[int]:
    """kill -9 the daemon ``KILLS`` times at random moments, restarting it at once after each.

    Returns the receiver pids killed on the way.
    """
    killed: list[int] = []
    for round_ in range(KILLS):
        time.sleep(rng.uniform(0.3, 1.5))
        assert d.proc is not None and d.proc.poll() is None, d.log_text()[-3000:]
        children = d.child_pids()
        assert len(children) == receivers, f"seed {seed}: children {children}"
        killed += children
        d.kill()
        # PR_SET_PDEATHSIG: the receivers die with the main process.
        wait_until(
            functools.partial(all_gone, children),
            timeout=5,
            what=f"seed {seed} round {round_}: receiver processes {children} outlived the daemon",
        )
        wait_until(
            lambda: port_refuses(d.host, d.port),
            timeout=5,
            what=f"seed {seed} round {round_}: the listening port is still open",
        )
        d.start()
    return killed


def final_restart(d: DaemonHandle, killed: list[int]) -> None:
    """One more crash with nothing in flight, then a start once every killed process is reaped.

    The restarts above happen at once, while killed receivers may still be zombies (their
    temp files then look live to recovery); this start sees them all gone, so recovery must
    leave nothing behind.
    """
    killed += d.child_pids()
    d.kill()
    wait_until(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in killed),
        timeout=10,
        what=f"killed receivers {killed} reaped",
    )
    d.start()


def wait_all_delivered(
    sink: ScriptedSmtpServer, acked: set[str], d: DaemonHandle, seed: int, timeout: float = 25
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if acked <= delivered_ids(sink):
            return
        time.sleep(0.1)
    missing = sorted(acked - delivered_ids(sink))
    raise AssertionError(
        f"seed {seed}: {len(missing)} of {len(acked)} acknowledged messages never arrived: "
        f"{missing[:20]}\n--- daemon log tail ---\n{d.log_text()[-4000:]}"
    )


def finish_cleanly(d: DaemonHandle) -> None:
    """After everything arrived: the spool drains, SIGTERM exits 0 and leaves it empty."""
    deadline = time.monotonic() + 10
    while d.spool_files() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = d.spool_files()
    assert left == [], f"spool not drained: {left[:10]} ({len(left)} files) in {d.spool_dir}"
    children = d.child_pids()
    assert d.stop() == 0
    assert all(pid_gone(pid) for pid in children)
    assert d.spool_files(empty=True) == []  # reserved names included


@pytest.mark.parametrize("receivers", [0, 2])
def test_kill_9_under_load_loses_no_acknowledged_message(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    d = make_daemon(receiver_processes=receivers)
    d.start()
    injector = Injector(d.host, d.port)
    injector.start()
    killed: list[int] = []
    try:
        killed = crash_repeatedly(d, rng, receivers, seed)
        time.sleep(rng.uniform(0.3, 1.0))  # some load on the last incarnation too
    finally:
        acked = injector.stop()
    assert len(acked) >= MIN_ACKED, f"seed {seed}: only {len(acked)} messages acknowledged"
    final_restart(d, killed)
    wait_all_delivered(sink, acked, d, seed)
    finish_cleanly(d)


@pytest.mark.parametrize("receivers", [0, 2])
def test_queue_survives_repeated_crashes_while_sink_is_down(
    make_daemon: Callable[..., DaemonHandle], mx_port: int, receivers: int
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    # Nothing listens on the MX yet: every acknowledged message stays queued.
    d = make_daemon(receiver_processes=receivers)
    d.start()
    injector = Injector(d.host, d.port)
    injector.start(workers=2)  # fewer messages: all of them are recovered at every restart
    killed: list[int] = []
    try:
        killed = crash_repeatedly(d, rng, receivers, seed)
    finally:
        acked = injector.stop()
    assert len(acked) >= MIN_ACKED, f"seed {seed}: only {len(acked)} messages acknowledged"
    final_restart(d, killed)
    # Every acknowledged message is still a file in the spool (one file per message).
    assert len(d.spool_files()) >= len(acked), f"seed {seed}: spool lost messages"
    assert not [r for r in d.accounting_rows() if r["type"] in ("d", "b")]

    sink = ScriptedSmtpServer(ServerScript(), host="127.0.0.2", port=mx_port)
    with sink.run_in_thread():
        wait_all_delivered(sink, acked, d, seed)
        finish_cleanly(d)
