"""The daemon as it ships: per-client limits spare relay-networks clients but still hold
outsiders, and X-Job from an anonymous outsider does not choose the job.

The daemon's relay-networks is 127.0.0.1/32 only; the outsider is the same host
connecting from a second loopback address, 127.0.0.2."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Callable

import pytest

from tests.support.daemon import DaemonHandle, rows, wait_until
from tests.support.smtp_server import ScriptedSmtpServer

TRUSTED, OUTSIDER = "127.0.0.1", "127.0.0.2"
RATE = 10  # max-connect-rate-per-client = "10/m": a burst of 10, then one every 6 s
LIMITS = f"""
max-connect-rate-per-client = "{RATE}/m"
max-messages-per-connection = 2
"""


def daemon_with_limits(make_daemon: Callable[..., DaemonHandle], receivers: int) -> DaemonHandle:
    d = make_daemon(receiver_processes=receivers, relay_networks=(f"{TRUSTED}/32",))
    d.edit_config("max-rcpt-per-message = 100\n", "max-rcpt-per-message = 100\n" + LIMITS)
    d.start()
    return d


def greetings(d: DaemonHandle, source: str, count: int) -> list[bytes]:
    """The first reply of each of ``count`` connections from ``source``, opened one after
    the other and all held open until every one is answered (so an mx listener's pregreet
    delay for outsiders is waited for once, and the rate is tested, not the clock)."""
    socks = [
        socket.create_connection((d.host, d.port), timeout=10, source_address=(source, 0))
        for _ in range(count)
    ]
    try:
        return [s.recv(512) for s in socks]
    finally:
        for s in socks:
            s.close()


def mail_codes(d: DaemonHandle, source: str, count: int) -> list[int]:
    """``count`` messages over one connection: each MAIL's reply code (421 ends it)."""
    codes: list[int] = []
    with smtplib.SMTP(d.host, d.port, timeout=10, source_address=(source, 0)) as smtp:
        smtp.ehlo("client.test")
        for i in range(count):
            code, _ = smtp.mail("a@sender.test")
            codes.append(code)
            if code == 421:
                break
            smtp.rcpt("b@example.org")
            smtp.data(f"Subject: {i}\r\n\r\nbody\r\n".encode())
    return codes


OK, REFUSED = b"220 mta.outrider.test", b"421 4.7.0 Connection rate limit exceeded"


@pytest.mark.parametrize("receivers", [0, 1])
def test_relay_networks_client_is_not_throttled_but_outsider_is(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    d = daemon_with_limits(make_daemon, receivers)
    # An application server on relay-networks: three times the burst, one connection
    # after the other, all served; more messages on one connection than the limit.
    for _ in range(3 * RATE):
        assert greetings(d, TRUSTED, 1)[0].startswith(OK)
    assert mail_codes(d, TRUSTED, 4) == [250, 250, 250, 250]
    # An outsider: the burst, then refused.
    outsider = greetings(d, OUTSIDER, RATE + 1)
    assert sum(g.startswith(OK) for g in outsider) == RATE
    assert sum(g.startswith(REFUSED) for g in outsider) == 1
    assert greetings(d, TRUSTED, 1)[0].startswith(OK)  # still served
    log = d.log_text()
    assert "refused: client=127.0.0.2" in log and "refused: client=127.0.0.1" not in log
    assert d.stop() == 0


@pytest.mark.parametrize("receivers", [0, 1])
def test_outsider_keeps_the_per_connection_message_limit(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    d = daemon_with_limits(make_daemon, receivers)
    assert mail_codes(d, OUTSIDER, 3) == [250, 250, 421]
    assert mail_codes(d, TRUSTED, 3) == [250, 250, 250]
    assert d.stop() == 0


@pytest.mark.parametrize("receivers", [0, 1])
def test_x_job_from_anonymous_outsider_does_not_set_the_job(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    d = make_daemon(receiver_processes=receivers, relay_networks=(f"{TRUSTED}/32",))
    d.start()

    def send(source: str, job: str, rcpt: str) -> None:
        message = f"Subject: job\r\nX-Job: {job}\r\n\r\nbody\r\n".encode()
        with smtplib.SMTP(d.host, d.port, timeout=10, source_address=(source, 0)) as smtp:
            smtp.sendmail("a@sender.test", [rcpt], message)

    send(OUTSIDER, "paused-campaign", "outsider@example.org")
    send(TRUSTED, "app-job", "trusted@example.org")
    msgs = sink.wait_for_messages_sync(2, timeout=10)
    assert not any(b"X-Job" in m.data for m in msgs)
    wait_until(lambda: len(rows(d, "d")) == 2, what="two deliveries accounted")
    assert d.stop() == 0
    jobs = {r["rcpt"]: r["jobId"] for r in rows(d, "d")}
    assert jobs == {"outsider@example.org": "", "trusted@example.org": "app-job"}
    assert "X-Job 'paused-campaign' from untrusted anonymous client 127.0.0.2 ignored" in (
        d.log_text()
    )
