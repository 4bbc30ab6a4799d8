"""The schedule snapshot with the real daemon (issue 12): a clean stop (SIGTERM) writes
it, the next start restores the queue from it without reading the message files; a
crash (SIGKILL) leaves none and the next start reads every file; a message file deleted
while the daemon was stopped is dropped. Every destination is a loopback sink that
defers until the test lets it accept; each message must then arrive exactly once."""

from __future__ import annotations

import re
import smtplib
from collections import Counter
from collections.abc import Callable

import pytest

from outrider.spool.recycle import RECYCLE_DIR
from outrider.spool.snapshot import SNAPSHOT_NAME
from tests.support.daemon import DaemonHandle, rows, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

BODY = b"From: a@sender.test\r\nSubject: snapshot\r\n\r\nhello\r\n"
DEFER = "451 4.7.1 try again later"


def _queue(d: DaemonHandle, sink: ScriptedSmtpServer, count: int) -> list[str]:
    """``count`` one-recipient messages, each deferred at least once by ``sink``."""
    rcpts = [f"r{i}@example.org" for i in range(count)]
    sink.script = ServerScript(rcpt_replies=dict.fromkeys(rcpts, DEFER))
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        for rcpt in rcpts:
            client.sendmail("a@sender.test", [rcpt], BODY)
    wait_until(
        lambda: {r["rcpt"] for r in rows(d, "t")} >= set(rcpts), timeout=30, what="deferrals"
    )
    return rcpts


def _accept_and_check_once(d: DaemonHandle, sink: ScriptedSmtpServer, rcpts: list[str]) -> None:
    sink.script = ServerScript()
    wait_until(
        lambda: {r for m in sink.messages for r in m.rcpts} >= set(rcpts),
        timeout=30,
        what="deliveries",
    )
    wait_until(lambda: d.spool_files() == [], timeout=10, what="spool emptied")
    counts = Counter(r for m in sink.messages for r in m.rcpts)
    assert counts == Counter(rcpts)  # each exactly once, nothing else


def _recovery_line(text: str) -> str:
    found = re.findall(r"recovered \d+ queued message\(s\) from the spool: [^\n]*", text)
    assert len(found) == 1, text[-3000:]
    return str(found[0])


def _start(d: DaemonHandle) -> str:
    """Start ``d`` again; the log of this run up to its start-up line."""
    offset = d.log_path.stat().st_size
    d.start()
    return d.log_text_since(offset)


@pytest.mark.parametrize("receivers", [0, 2])
def test_a_clean_stop_leaves_a_snapshot_the_next_start_restores(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    d = make_daemon(receiver_processes=receivers)
    d.start()
    rcpts = _queue(d, sink, 4)
    assert d.stop() == 0
    snapshot = d.spool_dir / SNAPSHOT_NAME
    assert snapshot.exists()
    assert "wrote the schedule snapshot: 4 message(s)" in d.log_text()
    assert len(d.spool_files()) == 4

    text = _start(d)
    line = _recovery_line(text)
    assert line.startswith("recovered 4 queued message(s) from the spool: 4 from the schedule ")
    assert "snapshot, 0 file(s) read, 0 snapshot entries dropped" in line
    assert not snapshot.exists()  # used once: gone before anything could change the spool
    _accept_and_check_once(d, sink, rcpts)
    assert d.stop() == 0
    assert not snapshot.exists()  # nothing queued: nothing to save, the spool stays empty
    assert sorted(p.name for p in d.spool_dir.iterdir() if p.name != RECYCLE_DIR) == []


def test_after_a_crash_no_snapshot_is_used_and_every_file_is_read(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon()
    d.start()
    rcpts = _queue(d, sink, 3)
    assert d.stop() == 0
    assert (d.spool_dir / SNAPSHOT_NAME).exists()
    assert "from the schedule snapshot" in _recovery_line(_start(d))
    d.kill()  # the snapshot was taken at the start: a crash leaves none behind
    assert not (d.spool_dir / SNAPSHOT_NAME).exists()

    line = _recovery_line(_start(d))
    assert line.startswith("recovered 3 queued message(s) from the spool: no schedule snapshot, ")
    assert "3 file(s) read" in line
    _accept_and_check_once(d, sink, rcpts)
    assert d.stop() == 0


def test_a_file_deleted_while_stopped_drops_its_message(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon()
    d.start()
    rcpts = _queue(d, sink, 3)
    assert d.stop() == 0
    needle = f'"{rcpts[1]}"'.encode()
    [queue_id] = [n for n in d.spool_files() if needle in (d.spool_dir / n).read_bytes()]
    (d.spool_dir / queue_id).unlink()  # an operator, offline

    text = _start(d)
    line = _recovery_line(text)
    assert line.startswith("recovered 2 queued message(s) from the spool: 2 from the schedule ")
    assert "0 file(s) read, 1 snapshot entry dropped" in line
    _accept_and_check_once(d, sink, [rcpts[0], rcpts[2]])
    assert d.stop() == 0
    assert "Traceback" not in d.log_text()


def test_a_torn_snapshot_is_ignored_with_a_warning(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon()
    d.start()
    rcpts = _queue(d, sink, 2)
    assert d.stop() == 0
    snapshot = d.spool_dir / SNAPSHOT_NAME
    snapshot.write_bytes(snapshot.read_bytes()[:-5])

    text = _start(d)
    assert len(re.findall("schedule snapshot ignored", text)) == 1
    line = _recovery_line(text)
    assert line.startswith("recovered 2 queued message(s) from the spool: no schedule snapshot, ")
    assert not snapshot.exists()
    _accept_and_check_once(d, sink, rcpts)
    assert d.stop() == 0


def test_a_stop_that_cancels_deliveries_writes_no_snapshot(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(shutdown_timeout="1s")
    d.start()
    sink.script = ServerScript(hang_at="greeting")  # the attempt is in flight at the stop
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        client.sendmail("a@sender.test", ["hung@example.org"], BODY)
    wait_until(lambda: sink.connections >= 1, what="the attempt connected")
    stale = d.spool_dir / SNAPSHOT_NAME
    stale.write_bytes(b"left by something else")
    d.stop()
    assert "no schedule snapshot: deliveries had to be cancelled" in d.log_text()
    assert not stale.exists()  # a stale one is removed too

    line = _recovery_line(_start(d))
    assert line.startswith("recovered 1 queued message(s) from the spool: no schedule snapshot, ")
    _accept_and_check_once(d, sink, ["hung@example.org"])
    assert d.stop() == 0
