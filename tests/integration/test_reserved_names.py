"""Reserved names through the real daemon (``outrider run``, the shipped default of
receiver processes): a client sending one message after another in one session gets
each stored with one flush into a name reserved earlier (spool.names); a clean stop
leaves no empty file behind, and after kill -9 the next start removes the empty files
left over while every acknowledged message is delivered."""

from __future__ import annotations

import os
import smtplib
import time
from collections.abc import Callable

from tests.support.daemon import DaemonHandle, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript


def _message(n: int) -> bytes:
    return (
        f"From: a@sender.test\r\nTo: b@example.org\r\nSubject: reserved {n}\r\n"
        f"Message-ID: <r{n}@sender.test>\r\n\r\nbody {n}\r\n"
    ).encode()


def _one_session(d: DaemonHandle, first: int, count: int) -> None:
    with smtplib.SMTP(d.host, d.port, timeout=10) as s:
        for n in range(first, first + count):
            assert s.sendmail("a@sender.test", ["b@example.org"], _message(n)) == {}


def _use_default_receivers(d: DaemonHandle) -> None:
    d.edit_config("receiver-processes = 1\n", "")  # the shipped default, whatever it is


def _subjects(sink: ScriptedSmtpServer) -> list[bytes]:
    return sorted(
        line
        for m in sink.messages
        for line in m.data.split(b"\r\n")
        if line.startswith(b"Subject: reserved")
    )


def test_one_session_stores_into_reserved_names_and_a_stop_removes_the_rest(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(receiver_processes=1)
    _use_default_receivers(d)
    d.start()
    try:
        _one_session(d, 0, 40)
        sink.wait_for_messages_sync(40, timeout=30)
        assert len(set(_subjects(sink))) == 40
        wait_until(lambda: d.spool_files() == [], timeout=10, what="the spool drained")
        # the receiver's names ready for the next messages: empty files
        assert d.spool_files(empty=True)
    finally:
        assert d.stop() == 0
    assert d.spool_files(empty=True) == []
    assert not (d.spool_dir / "quarantine").exists()


def test_after_kill_9_the_next_start_removes_unused_names_and_delivers_everything(
    make_daemon: Callable[..., DaemonHandle], mx_port: int
) -> None:
    d = make_daemon(receiver_processes=1)
    _use_default_receivers(d)
    d.start()  # nothing listens on the MX: the messages stay queued
    _one_session(d, 0, 30)
    before = set(d.spool_files(empty=True))
    queued = set(d.spool_files())
    assert len(queued) == 30
    leftover = before - queued
    assert leftover  # reserved names nobody stored into
    children = d.child_pids()
    d.kill()
    wait_until(
        lambda: all(not os.path.exists(f"/proc/{p}") for p in children),
        timeout=10,
        what="receivers gone",
    )
    time.sleep(0.1)  # file times are a kernel tick coarse: be clearly before the start
    d.start()
    try:
        wait_until(
            lambda: not (leftover & set(d.spool_files(empty=True))),
            timeout=15,
            what="the previous run's unused names removed",
        )
        assert queued <= set(d.spool_files())
        sink = ScriptedSmtpServer(ServerScript(), host="127.0.0.2", port=mx_port)
        with sink.run_in_thread():
            sink.wait_for_messages_sync(30, timeout=60)
            assert len(set(_subjects(sink))) == 30
            wait_until(lambda: d.spool_files() == [], timeout=15, what="the spool drained")
    finally:
        assert d.stop() == 0
    assert d.spool_files(empty=True) == []
    assert not (d.spool_dir / "quarantine").exists()
