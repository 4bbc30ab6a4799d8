"""The shipped default of receiver-processes (one per core, at most 8), through the real
daemon (``outrider run`` subprocess): it starts that many receivers, and a burst of
messages from parallel smtplib sessions, one message per connection and several per
session, all reach the sink through the hand-off channel, each once."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from outrider.config.model import default_receiver_processes
from tests.support.daemon import DaemonHandle
from tests.support.smtp_server import ScriptedSmtpServer


def _message(n: int) -> bytes:
    return (
        f"From: a@sender.test\r\nTo: b@example.org\r\nSubject: {n}\r\n"
        f"Message-ID: <m{n}@sender.test>\r\n\r\nbody {n}\r\n"
    ).encode()


def _session(d: DaemonHandle, first: int, count: int) -> None:
    with smtplib.SMTP(d.host, d.port, timeout=10) as s:
        for n in range(first, first + count):
            assert s.sendmail("a@sender.test", ["b@example.org"], _message(n)) == {}


def test_the_default_receivers_hand_over_every_message_once(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(receiver_processes=1)
    d.edit_config("receiver-processes = 1\n", "")  # the shipped default, whatever it is
    d.receiver_processes = expected = default_receiver_processes()
    d.start()
    try:
        assert len(d.child_pids()) == expected
        with ThreadPoolExecutor(4) as pool:
            jobs = [pool.submit(_session, d, 100 * i, 10) for i in range(4)]  # 10 per session
            jobs += [pool.submit(_session, d, 1000 + i, 1) for i in range(20)]  # 1 per connection
            for job in jobs:
                job.result()
        messages = sink.wait_for_messages_sync(60, timeout=30)
        subjects = sorted(
            line for m in messages for line in m.data.split(b"\r\n") if line.startswith(b"Subject:")
        )
        assert len(subjects) == 60 and len(set(subjects)) == 60
    finally:
        assert d.stop() == 0
