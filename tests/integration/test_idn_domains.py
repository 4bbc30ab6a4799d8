"""International domains through the daemon as it ships (uvloop, a receiver process):
``straße.test`` and ``xn--strae-oqa.test`` are one domain for the relay check, the
domain policy, the route, the queue and the MX look-up; ``strasse.test`` is another."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

from tests.support.daemon import DaemonHandle, rows, wait_until
from tests.support.dns_server import DnsTestServer
from tests.support.smtp_server import ScriptedSmtpServer

MSG = "From: a@sender.test\r\nTo: user@straße.test\r\nSubject: idn\r\n\r\nhallo\r\n".encode()


def test_relay_domain_and_route_for_an_idn_take_both_spellings(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, mx_port: int
) -> None:
    # The client (127.0.0.1) may not relay: only the relay domain lets mail in, and
    # straße.test is not in DNS, so the mail can only reach the sink by the route.
    d = make_daemon(
        receiver_processes=1, relay_networks=("10.9.9.9/32",), relay_domains=("straße.test",)
    )
    with open(d.config_path, "a") as fh:
        fh.write(f'\n[domain."straße.test"]\nroute = "127.0.0.2:{mx_port}"\n')
    d.start()
    with smtplib.SMTP(d.host, d.port, timeout=10) as s:
        s.ehlo("client.test")
        assert s.has_extn("smtputf8")
        assert s.mail("a@sender.test", ["SMTPUTF8"])[0] == 250
        assert s.rcpt("user@straße.test")[0] == 250
        assert s.rcpt("other@XN--STRAE-OQA.test")[0] == 250
        assert s.rcpt("user@strasse.test") == (554, b"5.7.1 Relay access denied")
        code, text = s.rcpt("user@☃.test")  # a snowman is no domain name
        assert (code, text[:5]) == (553, b"5.1.2")
        assert s.data(MSG)[0] == 250
    [msg] = sink.wait_for_messages_sync(1, timeout=15)
    assert msg.rcpts == ("user@straße.test", "other@XN--STRAE-OQA.test")  # one transaction
    assert "SMTPUTF8" in msg.mail_params
    assert msg.data.endswith(MSG)
    wait_until(lambda: len(rows(d, "d")) == 2, timeout=15, what="both deliveries accounted")
    assert d.stop() == 0


def test_policy_and_mx_of_an_idn_apply_to_its_unicode_spelling(
    make_daemon: Callable[..., DaemonHandle],
    dns_server: DnsTestServer,
    sink: ScriptedSmtpServer,
    sink2: ScriptedSmtpServer,
) -> None:
    # Only the A-label is in DNS (as on the Internet); strasse.test has its own MX.
    dns_server.set_records("xn--strae-oqa.test", "MX", [(10, "mx1.example.org")])
    dns_server.set_records("strasse.test", "MX", [(10, "mx.second.test")])
    d = make_daemon(receiver_processes=1)  # 127.0.0.1 may relay
    with open(d.config_path, "a") as fh:
        fh.write('\n[domain."xn--strae-oqa.test"]\nmax-rcpt-per-transaction = 1\n')
    d.start()
    with smtplib.SMTP(d.host, d.port, timeout=10) as s:
        rcpts = ["a@straße.test", "b@STRAßE.test", "c@strasse.test", "d@STRASSE.test"]
        refused = s.sendmail("a@sender.test", rcpts, MSG, mail_options=["SMTPUTF8"])
        assert refused == {}
    idn = sink.wait_for_messages_sync(2, timeout=15)  # the policy: one recipient each
    assert sorted(m.rcpts for m in idn) == [("a@straße.test",), ("b@STRAßE.test",)]
    [other] = sink2.wait_for_messages_sync(1, timeout=15)  # another domain, default policy
    assert other.rcpts == ("c@strasse.test", "d@STRASSE.test")
    assert dns_server.query_count("xn--strae-oqa.test", "MX") >= 1
    assert dns_server.query_count("strasse.test", "MX") >= 1
    wait_until(lambda: len(rows(d, "d")) == 4, timeout=15, what="four deliveries accounted")
    assert not rows(d, "b")
    assert d.stop() == 0
