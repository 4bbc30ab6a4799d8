"""Daemon lifecycle: SIGTERM drains gracefully, SIGHUP reloads (or refuses a bad config).

Each test runs the real ``outrider run`` subprocess; the receiver-process variants check
that the children follow the main process (they reload and exit with it).
"""

from __future__ import annotations

import re
import signal
import smtplib
import time
from collections.abc import Callable

import pytest

from tests.support.daemon import DaemonHandle, pid_gone, port_refuses, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

SENDER = "a@sender.test"
STOPPING = "stopping: finishing in-flight work"


def message(uid: str, rcpt: str = "b@example.org", body: bytes = b"hello\r\n") -> bytes:
    head = f"From: {SENDER}\r\nTo: {rcpt}\r\nSubject: {uid}\r\nMessage-ID: <{uid}@client.test>\r\n"
    return head.encode() + b"\r\n" + body


def arrived(sink: ScriptedSmtpServer, uid: str) -> int:
    """How many copies of the message with this Message-ID the sink received."""
    needle = f"\r\nMessage-ID: <{uid}@client.test>\r\n".encode()
    return sum(1 for m in sink.messages if needle in m.data)


def send(d: DaemonHandle, rcpt: str, uid: str) -> None:
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        assert client.sendmail(SENDER, [rcpt], message(uid, rcpt)) == {}


def rcpt_code(d: DaemonHandle, rcpt: str) -> int:
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.mail(SENDER)[0] == 250
        return client.rcpt(rcpt)[0]


def wait_stopping(d: DaemonHandle) -> None:
    """The daemon handled SIGTERM: it logged so and no process listens any more."""
    wait_until(lambda: STOPPING in d.log_text(), timeout=5, what="SIGTERM handled")
    wait_until(lambda: port_refuses(d.host, d.port), timeout=5, what="listeners closed")


def stop_timed(d: DaemonHandle, timeout: float) -> tuple[int, float]:
    """SIGTERM; the exit code and how long the exit took (fails past ``timeout``)."""
    started = time.monotonic()
    code = d.stop(timeout=timeout)
    return code, time.monotonic() - started


# -- SIGTERM ----------------------------------------------------------------------------


@pytest.mark.parametrize("receivers", [0, 2])
def test_sigterm_mid_data_finishes_the_transaction(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    d = make_daemon(receiver_processes=receivers, shutdown_timeout="5s")
    d.start()
    children = d.child_pids()
    assert len(children) == receivers
    body = b"".join(b"body line %d\r\n" % i for i in range(200))
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt("b@example.org")[0] == 250
        assert client.docmd("DATA")[0] == 354
        content = message("midterm", body=body)
        client.send(content[: len(content) // 2])
        d.signal(signal.SIGTERM)
        wait_stopping(d)
        client.send(content[len(content) // 2 :] + b".\r\n")
        code, text = client.getreply()
        assert code == 250, text
        # The transaction is over: the session is now idle and gets the shutdown reply.
        code, text = client.getreply()
        assert (code, text[:5]) == (421, b"4.3.2")
    assert d.stop(timeout=15) == 0
    assert all(pid_gone(pid) for pid in children)
    if not arrived(sink, "midterm"):
        assert d.spool_files(), "acknowledged but neither delivered nor queued"
        d.start()
        wait_until(lambda: arrived(sink, "midterm") > 0, what="delivery after restart")
        assert d.stop() == 0
    assert arrived(sink, "midterm") == 1
    assert d.spool_files() == []


@pytest.mark.parametrize("receivers", [0, 2])
def test_sigterm_closes_idle_session_with_421(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    d = make_daemon(receiver_processes=receivers, shutdown_timeout="4s")
    d.start()
    children = d.child_pids()
    assert len(children) == receivers
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        assert client.ehlo("client.test")[0] == 250
        started = time.monotonic()
        d.signal(signal.SIGTERM)
        code, text = client.getreply()
        assert (code, text[:5]) == (421, b"4.3.2"), text
        assert d.proc is not None
        assert d.proc.wait(timeout=10) == 0
        elapsed = time.monotonic() - started
    assert elapsed < 4.0, f"an idle session held the shutdown for {elapsed:.1f}s"
    assert all(pid_gone(pid) for pid in children)
    d.proc = None


def test_sigterm_with_hung_delivery_keeps_the_message(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(hang_at="data_done")
    d = make_daemon(
        shutdown_timeout="2s",
        domain_defaults='[domain."example.org"]\nsmtp-data-termination-timeout = "60s"',
    )
    d.start()
    send(d, "b@example.org", "hung")
    wait_until(
        lambda: any(
            c == "DATA" or c.upper().endswith(" LAST") for s in sink.sessions for c in s.commands
        ),
        what="delivery reached the end of data",
    )
    time.sleep(0.2)  # let the rest of the message reach the (silent) sink
    code, elapsed = stop_timed(d, timeout=2 + 8)
    assert code == 0
    assert elapsed < 2 + 3, f"shutdown took {elapsed:.1f}s with shutdown-timeout 2s"
    assert arrived(sink, "hung") == 0
    assert len(d.spool_files()) == 1, "the undelivered message must stay queued"

    sink.script = ServerScript()
    d.start()
    wait_until(lambda: arrived(sink, "hung") == 1, what="delivery after restart")
    wait_until(lambda: d.spool_files() == [], what="spool drained")
    assert d.stop() == 0
    assert [r["type"] for r in d.accounting_rows() if r["type"] == "d"] == ["d"]


@pytest.mark.parametrize("receivers", [1, 2])
def test_receiver_handoff_socket_is_cleaned_up(
    make_daemon: Callable[..., DaemonHandle], receivers: int
) -> None:
    # One crash, then a clean run: neither may leave its hand-off socket in the spool.
    d = make_daemon(receiver_processes=receivers)
    d.start()
    d.kill()
    d.start()
    assert d.stop() == 0
    leftovers = sorted(p.name for p in d.spool_dir.iterdir())
    assert leftovers == [], f"stale files in the spool directory: {leftovers}"


def test_started_only_once_every_receiver_listens(
    make_daemon: Callable[..., DaemonHandle],
) -> None:
    # Receivers read the config file themselves: until each has, an edit of the file (or a
    # SIGHUP) races with their start-up, and one failing to start then stops the daemon. So
    # "started" must be logged only once every receiver listens.
    receivers = 4
    d = make_daemon(receiver_processes=receivers)
    d.start()  # returns once all of them are up, whatever the order
    log = d.log_text()
    started = log.index(" started: ")
    late = [
        i
        for i in range(receivers)
        if log.find(f"[receiver-{i}] outrider.inbound: listening") > started
    ]
    assert not late, f"'started' logged before receivers {late} were listening:\n{log}"
    assert d.stop() == 0


# -- SIGHUP -----------------------------------------------------------------------------


@pytest.mark.parametrize("receivers", [0, 2])
def test_sighup_applies_a_changed_config(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    # The loopback client is not in relay-networks: only [relay] domains are accepted.
    d = make_daemon(receiver_processes=receivers, relay_networks=("10.9.9.9/32",))
    d.start()
    children = d.child_pids()
    assert rcpt_code(d, "x@sender.test") == 554
    d.edit_config('domains = ["example.org"]', 'domains = ["example.org", "sender.test"]')
    d.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in d.log_text(), what="reload logged")
    # Every receiver must have reloaded: require a run of accepted sessions (with two
    # receivers sharing the port, a stale one would be hit with probability 1 - 2**-12).
    streak = 0

    def accepted_streak() -> bool:
        nonlocal streak
        streak = streak + 1 if rcpt_code(d, "x@sender.test") == 250 else 0
        return streak >= 12

    wait_until(accepted_streak, timeout=10, what="relay to the new domain accepted")
    assert rcpt_code(d, "x@outside.test") == 554  # the rest of the policy is unchanged
    send(d, "x@sender.test", "after-reload")
    wait_until(lambda: arrived(sink, "after-reload") == 1, what="delivery")
    assert d.child_pids() == children, "reload must not restart the receivers"
    assert d.stop() == 0
    assert all(pid_gone(pid) for pid in children)


@pytest.mark.parametrize("receivers", [0, 2])
def test_sighup_with_invalid_config_keeps_the_old_one(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    d = make_daemon(receiver_processes=receivers)
    d.start()
    children = d.child_pids()
    # A broken duration, plus a change that would deny this client relaying if applied.
    d.edit_config('shutdown-timeout = "10s"', 'shutdown-timeout = "10x"')
    d.edit_config('relay-networks = ["127.0.0.0/8"]', 'relay-networks = ["10.9.9.9/32"]')
    d.signal(signal.SIGHUP)
    # The main process refuses it (and so does not pass the SIGHUP on to its receivers).
    wait_until(lambda: "reload refused" in d.log_text(), what="reload refused")
    time.sleep(0.3)  # a receiver that wrongly reloaded would have done so by now
    log = d.log_text()
    assert re.search(r"outrider\.toml:\d+: server\.shutdown-timeout: invalid duration", log), log
    assert "configuration reloaded" not in log
    assert d.proc is not None and d.proc.poll() is None
    assert d.child_pids() == children
    # Still running on the old config: relaying from loopback is allowed.
    send(d, "x@sender.test", "old-config-1")
    send(d, "b@example.org", "old-config-2")
    wait_until(
        lambda: arrived(sink, "old-config-1") == 1 and arrived(sink, "old-config-2") == 1,
        what="delivery on the old config",
    )
    assert d.stop() == 0
    assert all(pid_gone(pid) for pid in children)


def test_local_sockets_are_private(make_daemon: Callable[..., DaemonHandle]) -> None:
    import stat

    d = make_daemon(receiver_processes=1)
    d.start()
    for path in (d.spool_dir / ".handoff.sock", d.workdir / "var" / "state" / "control.sock"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(d.spool_dir.stat().st_mode) == 0o700
    assert d.stop() == 0
