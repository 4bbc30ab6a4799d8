"""What the daemon logs: one line per message received and per recipient delivered or
bounced (with the queue id), and no false warning on a reload.

Run the way the daemon ships: ``outrider run`` as a subprocess, with and without
receiver processes.
"""

from __future__ import annotations

import re
import signal
import smtplib
import time
from collections.abc import Callable

import pytest

from tests.support.daemon import DaemonHandle, free_port, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

SENDER = "a@sender.test"
QUEUED = re.compile(rb"queued as (\S+)")


def send(d: DaemonHandle, rcpts: list[str]) -> str:
    """One message; returns its queue id (from the 250 reply)."""
    content = f"From: {SENDER}\r\nSubject: log\r\n\r\nhello\r\n".encode()
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.mail(SENDER)[0] == 250
        for rcpt in rcpts:
            assert client.rcpt(rcpt)[0] == 250
        code, text = client.data(content)
        assert code == 250, text
    match = QUEUED.search(text)
    assert match is not None, text
    return match.group(1).decode()


@pytest.mark.parametrize("receivers", [0, 1])
def test_log_has_a_line_per_message_received_and_recipient_delivered_or_bounced(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    sink.script = ServerScript(rcpt_replies={"gone@example.org": "550 5.1.1 no such user"})
    d = make_daemon(receiver_processes=receivers)
    d.start()
    qid = send(d, ["b@example.org", "gone@example.org"])
    received = re.escape(qid) + r": received from=<a@sender\.test> size=\d+ nrcpt=2 "
    delivered = (
        re.escape(qid) + r": delivered to=<b@example\.org> relay=mx1\.example\.org "
        r"\[127\.0\.0\.2\] status=2\.0\.0 \(.*\)$"
    )
    bounced = (
        re.escape(qid) + r": bounced to=<gone@example\.org> relay=mx1\.example\.org "
        r"\[127\.0\.0\.2\] status=5\.1\.1 category=bad-mailbox \(.*no such user\)$"
    )
    wait_until(
        lambda: all(
            re.search(pattern, d.log_text(), re.MULTILINE)
            for pattern in (received, delivered, bounced)
        ),
        what="received, delivered and bounced lines",
    )
    assert d.stop() == 0
    lines = [line for line in d.log_text().splitlines() if f" outrider.mail: {qid}: " in line]
    assert all(" INFO " in line for line in lines), lines
    assert len(lines) == 3, lines  # one line per event, nothing twice
    # The bounce's DSN is a message of its own, logged under its own queue id.
    assert f" outrider.mail: {qid}-F: received from=<> " in d.log_text()


@pytest.mark.parametrize("receivers", [0, 2])
def test_sighup_with_an_unchanged_config_warns_about_nothing(
    make_daemon: Callable[..., DaemonHandle], receivers: int
) -> None:
    d = make_daemon(receiver_processes=receivers)
    d.start()
    d.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in d.log_text(), what="reload logged")
    time.sleep(0.5)  # the receivers reload too (and would warn by now)
    assert d.stop() == 0
    log = d.log_text()
    assert "needs a restart" not in log, log
    assert "keeps listening until a restart" not in log, log
    assert " WARNING " not in log, log


@pytest.mark.parametrize("receivers", [0, 2])
def test_sighup_with_a_new_listener_says_it_needs_a_restart(
    make_daemon: Callable[..., DaemonHandle], receivers: int
) -> None:
    d = make_daemon(receiver_processes=receivers)
    d.start()
    port = free_port()
    with d.config_path.open("a") as fh:
        fh.write(f'\n[[listener]]\naddress = "127.0.0.1:{port}"\n')
    d.signal(signal.SIGHUP)
    warning = f"reload: new listener 127.0.0.1:{port} needs a restart to take effect"
    # Logged by whichever process holds the listeners: the daemon, or each receiver.
    wait_until(
        lambda: d.log_text().count(warning) == max(receivers, 1), what="the warning, once each"
    )
    unchanged = f"new listener 127.0.0.1:{d.port} "
    assert unchanged not in d.log_text()
    assert d.stop() == 0
