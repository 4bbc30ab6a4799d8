"""The real daemon (receiver processes, uvloop) reuses the files of delivered messages for
the next ones (spool.recycle): a delivered message's file waits in the bin, a receiver
takes it for a reserved name, and every message still arrives exactly once."""

from __future__ import annotations

import os
import smtplib
from collections import Counter
from collections.abc import Callable

from outrider.spool.recycle import CAP, RECYCLE_DIR
from tests.support.daemon import DaemonHandle, wait_until
from tests.support.smtp_server import ScriptedSmtpServer

BODY = b"From: a@sender.test\r\nSubject: recycle\r\n\r\nhello\r\n"


def _send(d: DaemonHandle, rcpts: list[str]) -> None:
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        for rcpt in rcpts:
            client.sendmail("a@sender.test", [rcpt], BODY)


def _inodes(directory: str) -> dict[int, str]:
    found = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                found[entry.inode()] = entry.name
    return found


def test_delivered_messages_files_hold_the_next_messages(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(receiver_processes=2)
    d.start()
    bin_dir = str(d.spool_dir / RECYCLE_DIR)
    first = [f"a{i}@example.org" for i in range(80)]
    _send(d, first)
    wait_until(lambda: len(sink.messages) == len(first), timeout=30, what="first deliveries")
    wait_until(lambda: d.spool_files() == [], timeout=10, what="spool emptied")
    binned = _inodes(bin_dir)
    assert 0 < len(binned) <= CAP

    second = [f"b{i}@example.org" for i in range(80)]
    _send(d, second)
    wait_until(lambda: len(sink.messages) == len(first) + len(second), timeout=30, what="more")

    def reused() -> bool:
        now = {**_inodes(str(d.spool_dir)), **_inodes(bin_dir)}
        return any(now.get(inode, name) != name for inode, name in binned.items())

    # A file of the first batch now carries another name: a reserved name of a receiver,
    # or a message of the second batch delivered and binned in its turn.
    wait_until(reused, timeout=10, what="a binned file reused under a new queue id")
    counts = Counter(r for m in sink.messages for r in m.rcpts)
    assert counts == Counter(first + second)
    assert d.stop() == 0
