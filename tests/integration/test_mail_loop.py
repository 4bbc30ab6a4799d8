"""Mail loops through the daemon as shipped (issue 8.1).

A domain whose MX is the daemon's own listener, a server that greets with the daemon's
own hostname, and a route that leads back to the daemon on purpose (stopped by the hop
count) each end in exactly one bounce with 5.4.6, routed to the sender's MX (the
sink); no copy goes round. An anonymous client cannot use an address-literal sender
(whose bounce would go to the address it names) or recipient.
"""

from __future__ import annotations

import email
import email.policy
import ipaddress
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from outrider.delivery.loops import host_has_address
from tests.support.daemon import DaemonHandle, free_port, rows, wait_until, write_config
from tests.support.dns_server import DnsTestServer
from tests.support.smtp_server import ReceivedMessage, ScriptedSmtpServer, ServerScript

MSG = b"From: a@sender.test\r\nSubject: loop\r\nMessage-ID: <loop@sender.test>\r\n\r\nhello\r\n"


@pytest.fixture
def own_port_daemon(
    tmp_path: Path, dns_server: DnsTestServer, mx_port: int
) -> Iterator[Callable[..., DaemonHandle]]:
    """Like ``make_daemon``, but ``extra`` may name the daemon's own port as ``{port}``."""
    handles: list[DaemonHandle] = []

    def factory(extra: str = "", **kwargs: object) -> DaemonHandle:
        port = free_port()
        handle = write_config(
            tmp_path / f"d{len(handles)}",
            port=port,
            dns=dns_server.address,
            domain_defaults=f"smtp-port = {mx_port}\n",
            extra=extra.format(port=port),
            **kwargs,  # type: ignore[arg-type]
        )
        handles.append(handle)
        return handle

    yield factory
    for handle in handles:
        handle.kill()


def send(d: DaemonHandle, rcpt: str) -> None:
    with smtplib.SMTP(d.host, d.port, timeout=10) as s:
        assert s.sendmail("a@sender.test", [rcpt], MSG) == {}


def dsn_status(dsn: ReceivedMessage) -> str:
    parsed = email.message_from_bytes(dsn.data, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    return str(parsed.get_payload()[1].as_string())  # type: ignore[index,union-attr]


def one_bounce(d: DaemonHandle, sink: ScriptedSmtpServer, rcpt: str) -> str:
    """Wait for the one DSN to a@sender.test; make sure no other copy or DSN follows."""
    started = time.monotonic()
    [dsn] = sink.wait_for_messages_sync(1, timeout=20)
    assert time.monotonic() - started < 20
    assert dsn.mail_from == "" and dsn.rcpts == ("a@sender.test",)
    wait_until(lambda: not d.spool_files(), timeout=10, what="spool empty")
    time.sleep(1.5)  # would a copy still be going round?
    assert len(sink.messages) == 1
    bounced = [r for r in rows(d, "b") if r["rcpt"] == rcpt]
    assert len(bounced) == 1
    assert bounced[0]["dsnStatus"] == "5.4.6"
    assert d.spool_files() == []
    return dsn_status(dsn)


@pytest.mark.parametrize("receivers", [0, 2])
def test_mx_pointing_back_at_the_daemon_bounces_once(
    own_port_daemon: Callable[..., DaemonHandle],
    dns_server: DnsTestServer,
    sink: ScriptedSmtpServer,
    receivers: int,
) -> None:
    dns_server.set_records("loop.test", "MX", [(10, "mx.loop.test")])
    dns_server.set_records("mx.loop.test", "A", ["127.0.0.1"])
    d = own_port_daemon(
        extra='[domain."loop.test"]\nsmtp-port = {port}\n',
        relay_domains=("example.org", "loop.test"),
        receiver_processes=receivers,
    )
    d.start()
    send(d, "x@loop.test")
    status = one_bounce(d, sink, "x@loop.test")
    assert "Final-Recipient: rfc822; x@loop.test" in status
    assert "Status: 5.4.6" in status
    assert "mail for loop.test loops back to myself" in status
    # The daemon never connected to itself: nothing was relayed, one message was received.
    assert [r for r in rows(d, "d") if r["rcpt"] == "x@loop.test"] == []
    assert "loops back to myself" in d.log_text()
    assert d.stop() == 0


def test_server_greeting_with_our_hostname_bounces_once(
    own_port_daemon: Callable[..., DaemonHandle],
    sink: ScriptedSmtpServer,
    sink2: ScriptedSmtpServer,
) -> None:
    # second.test's MX (sink2) is reached through an address we cannot recognise as ours
    # (NAT, a proxy) but greets with our own name, as the daemon itself would.
    sink2.script = ServerScript(greeting="220 mta.outrider.test ESMTP Outrider")
    d = own_port_daemon(relay_domains=("example.org", "second.test"))
    d.start()
    send(d, "y@second.test")
    status = one_bounce(d, sink, "y@second.test")
    assert "Status: 5.4.6" in status
    assert "mail for second.test loops back to myself" in status
    assert sink2.messages == []
    assert d.stop() == 0


def test_route_back_to_the_daemon_is_stopped_by_the_hop_count(
    own_port_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    # An explicit route may lead to ourselves (no loop check), so only the hop count
    # (max-received-headers, 50 by default) ends it: copy 50 is refused with 554 5.4.6,
    # and the daemon, its sender, bounces it to the original sender.
    d = own_port_daemon(
        extra='[domain."hops.test"]\nroute = "127.0.0.1:{port}"\n',
        relay_domains=("example.org", "hops.test"),
    )
    d.start()
    send(d, "z@hops.test")
    status = one_bounce(d, sink, "z@hops.test")
    assert "Status: 5.4.6" in status
    assert "Too many hops" in status
    relayed = [r for r in rows(d, "d") if r["rcpt"] == "z@hops.test"]
    assert len(relayed) == 49  # copies 1..49 went round once each
    assert d.stop() == 0


def test_anonymous_address_literals_are_refused(
    own_port_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    # MAIL FROM:<x@[127.0.0.1]> with a recipient that bounces sent the DSN to ourselves.
    d = own_port_daemon(relay_networks=("10.9.9.9/32",))
    d.start()
    with smtplib.SMTP(d.host, d.port, timeout=10) as s:
        s.ehlo("client.test")
        code, text = s.mail("x@[127.0.0.1]")
        assert (code, text[:5]) == (550, b"5.7.1")
        assert b"literal" in text
        assert s.mail("a@sender.test")[0] == 250
        code, text = s.rcpt("x@[127.0.0.1]")
        assert (code, text[:5]) == (550, b"5.7.1")
        assert s.rcpt("ok@example.org")[0] == 250
    assert d.stop() == 0


def test_host_has_address() -> None:
    def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(text)

    assert host_has_address(ip("127.0.0.1"))
    assert host_has_address(ip("127.3.2.1"))
    assert host_has_address(ip("::1"))
    assert not host_has_address(ip("192.0.2.1"))  # TEST-NET-1: never assigned here
    assert not host_has_address(ip("2001:db8::1"))
    # The address this host sends from, when it has a route at all, is its own.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return
        mine = probe.getsockname()[0]
    assert host_has_address(ip(mine))
