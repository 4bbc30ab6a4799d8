"""Mail for the postmaster, through the daemon as it ships: an outside client that may
not relay still reaches ``[server] postmaster`` (RFC 5321 section 4.5.1)."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import pytest

from tests.support.daemon import DaemonHandle, rows, wait_until
from tests.support.smtp_server import ScriptedSmtpServer

MSG = b"From: a@sender.test\r\nTo: postmaster\r\nSubject: your server\r\n\r\nhello\r\n"


@pytest.mark.parametrize("receivers", [0, 1])
def test_an_outsider_reaches_the_postmaster_on_an_mx_listener(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, receivers: int
) -> None:
    # 127.0.0.1 is outside relay-networks, and example.org (the sink's domain) is not
    # a relay domain: the client may not send there except to the postmaster.
    d = make_daemon(
        receiver_processes=receivers, relay_networks=("10.9.9.9/32",), relay_domains=("r.test",)
    )
    d.edit_config("shutdown-timeout", 'postmaster = "hostmaster@example.org"\nshutdown-timeout')
    d.start()
    with smtplib.SMTP(d.host, d.port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("a@sender.test")
        assert s.rcpt("hostmaster@example.org")[0] == 554  # still no open relay
        assert s.rcpt("Postmaster") == (250, b"2.1.5 OK")
        assert s.rcpt("POSTMASTER@mta.outrider.test")[0] == 250
        assert s.data(MSG)[0] == 250
    [msg] = sink.wait_for_messages_sync(1, timeout=10)
    assert msg.rcpts == ("hostmaster@example.org",)  # queued once, for the postmaster
    assert msg.data.endswith(MSG)
    wait_until(lambda: len(rows(d, "d")) == 1, what="delivery accounted")
    assert [r["rcpt"] for r in rows(d, "d")] == ["hostmaster@example.org"]
    assert d.stop() == 0
