"""More shaping and outbound TLS end to end: the real daemon against loopback sinks.

Covers what the unit tests check in isolation but nothing drove through the daemon yet:
recipient splitting, connection rate, per-virtual-MTA domain overrides, the listener's
default virtual MTA, backoff left on delivery or by the operator, queue priority under
a global connection cap, required and verified STARTTLS, and MTA-STS enforce.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.daemon import (
    SHAPING_BODY,
    THROTTLE_PATTERNS,
    THROTTLED_REPLY,
    DaemonHandle,
    control,
    inject,
    rows,
    wait_until,
)
from tests.support.dns_server import DnsTestServer
from tests.support.https_server import HttpsResponse, HttpsTestServer
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript
from tests.support.tls import server_context

STS_PATH = "/.well-known/mta-sts.txt"
STS_POLICY = b"version: STSv1\nmode: enforce\nmx: mx.allowed.test\nmax_age: 86400\n"
# Names the TLS sink's certificate is valid for: the MX of example.org and the MX an
# MTA-STS policy allows (see ``sts_dns``).
SINK_NAMES = ("mx1.example.org", "mx.allowed.test")


def send(d: DaemonHandle, rcpts: list[str], *, headers: bytes = b"") -> None:
    """One message to ``rcpts`` in one SMTP session."""
    with smtplib.SMTP(d.host, d.port, timeout=20) as s:
        s.sendmail("s@sender.test", rcpts, headers + SHAPING_BODY)


def queue_status(d: DaemonHandle) -> list[dict[str, object]]:
    status = control(d, {"cmd": "status"})["status"]
    return status["queues"]  # type: ignore[index,no-any-return]


def set_server_option(d: DaemonHandle, line: str) -> None:
    """Add a key to the config's [server] table (write_config has no parameter for it)."""
    d.edit_config("receiver-processes = 0", f"receiver-processes = 0\n{line}")


# -- TLS fixtures ---------------------------------------------------------------------------


@pytest.fixture
def tls_sink(mx_port: int, ca: trustme.CA) -> Iterator[ScriptedSmtpServer]:
    """The first sink's address (127.0.0.2), offering STARTTLS with a cert from ``ca``."""
    server = ScriptedSmtpServer(
        ServerScript(), host="127.0.0.2", port=mx_port, tls_context=server_context(ca, *SINK_NAMES)
    )
    with server.run_in_thread() as running:
        yield running


@contextlib.contextmanager
def https_in_thread(server: HttpsTestServer) -> Iterator[HttpsTestServer]:
    """Serve ``server`` from its own event loop in a thread (the daemon is a subprocess)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="https-test", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        yield server
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def sts_https(ca: trustme.CA) -> Iterator[HttpsTestServer]:
    """The policy host of sts.test and sts-ok.test: one enforce policy naming mx.allowed.test."""
    server = HttpsTestServer(server_context(ca, "mta-sts.sts.test", "mta-sts.sts-ok.test"))
    server.responses[STS_PATH] = HttpsResponse(body=STS_POLICY)
    with https_in_thread(server) as running:
        yield running


@pytest.fixture
def sts_dns(dns_server: DnsTestServer) -> DnsTestServer:
    """Two MTA-STS domains: sts.test's MX is not in the policy, sts-ok.test's is."""
    for domain, mx in (("sts.test", "mx1.example.org"), ("sts-ok.test", "mx.allowed.test")):
        dns_server.set_records(domain, "MX", [(10, mx)])
        dns_server.set_records(f"_mta-sts.{domain}", "TXT", ["v=STSv1; id=1;"])
        dns_server.set_records(f"mta-sts.{domain}", "A", ["127.0.0.1"])
    dns_server.set_records("mx.allowed.test", "A", ["127.0.0.2"])
    return dns_server


# -- shaping ------------------------------------------------------------------------------


def test_max_rcpt_per_transaction_splits_one_message(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(domain_defaults='[domain."example.org"]\nmax-rcpt-per-transaction = 2')
    d.start()
    rcpts = [f"u{i}@example.org" for i in range(5)]
    send(d, rcpts)
    msgs = sink.wait_for_messages_sync(3, timeout=10)
    time.sleep(0.3)  # a fourth transaction would be a bug too
    assert len(sink.messages) == 3
    assert sorted(len(m.rcpts) for m in msgs) == [1, 2, 2]
    assert sorted(r for m in msgs for r in m.rcpts) == rcpts
    assert len({m.data for m in msgs}) == 1  # the same content in every transaction
    assert d.stop() == 0
    delivered = rows(d, "d")
    assert sorted(r["rcpt"] for r in delivered) == rcpts
    assert [r["type"] for r in d.accounting_rows()] == ["d"] * 5


def test_max_connect_rate_spaces_new_connections(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(
        domain_defaults=(
            '[domain."example.org"]\nmax-connect-rate = "2/s"\nmax-msg-per-connection = 1'
        )
    )
    d.start()
    inject(d, ["a@example.org"], 8)
    msgs = sink.wait_for_messages_sync(8, timeout=15)
    assert len({m.session for m in msgs}) == 8  # one message per connection
    # With one message per connection, a message's arrival follows its connection's
    # opening by a constant few milliseconds: the gaps are the connection gaps.
    times = sorted(m.arrived_at for m in msgs)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert sum(gaps) / len(gaps) >= 0.4, gaps
    assert min(gaps) >= 0.3, gaps  # no burst anywhere, not just on average
    assert sink.connections == 8
    assert d.stop() == 0


def test_virtual_mta_domain_override_limits_connections(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(
        domain_defaults="max-smtp-out = 5",
        extra=(
            '[virtual-mta.mta10]\nsmtp-source-host = "127.0.0.10 mta10.outrider.test"\n'
            '[virtual-mta.mta10.domain."example.org"]\nmax-smtp-out = 1\n'
            '[sender-domain."sender.test"]\nvirtual-mta = "mta10"\n'
        ),
    )
    d.start()
    inject(d, ["a@example.org"], 40)
    msgs = sink.wait_for_messages_sync(40, timeout=20)
    assert {m.peer[0] for m in msgs} == {"127.0.0.10"}
    assert sink.max_concurrent == 1
    [queue] = queue_status(d)
    assert queue["vmta"] == "mta10" and queue["window"] == 1
    assert d.stop() == 0


def test_listener_default_virtual_mta_and_ignored_header(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(
        extra=(
            '[virtual-mta.mta10]\nsmtp-source-host = "127.0.0.10 mta10.outrider.test"\n'
            '[virtual-mta.mta11]\nsmtp-source-host = "127.0.0.11 mta11.outrider.test"\n'
        )
    )
    d.edit_config(
        "max-rcpt-per-message = 100", 'max-rcpt-per-message = 100\ndefault-virtual-mta = "mta11"'
    )
    d.start()
    # The listener does not set process-x-virtual-mta: the header must neither choose
    # mta10 nor leave Outrider.
    send(d, ["a@example.org"], headers=b"X-Virtual-MTA: mta10\r\n")
    [msg] = sink.wait_for_messages_sync(1, timeout=10)
    assert msg.peer[0] == "127.0.0.11"
    assert msg.helo == "mta11.outrider.test"
    assert b"x-virtual-mta" not in msg.data.lower()
    assert d.stop() == 0
    [delivered] = rows(d, "d")
    assert delivered["vmta"] == "mta11" and delivered["dlvSourceIp"] == "127.0.0.11"


def test_backoff_ends_on_first_delivery(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"slow@example.org": THROTTLED_REPLY})
    d = make_daemon(
        domain_defaults=(
            '[domain."example.org"]\nsmtp-pattern-list = "throttle"\n'
            "backoff-to-normal-after-delivery = true\n"
        ),
        extra=THROTTLE_PATTERNS,
    )
    d.start()
    send(d, ["slow@example.org"])
    wait_until(lambda: bool(rows(d, "q")), timeout=10, what="backoff record")
    assert [q["mode"] for q in queue_status(d)] == ["backoff"]
    assert sink.messages == []
    send(d, ["ok@example.org"])
    [msg] = sink.wait_for_messages_sync(1, timeout=10)
    assert msg.rcpts == ("ok@example.org",)
    wait_until(
        lambda: [r["dsnAction"] for r in rows(d, "q")] == ["backoff", "normal"],
        timeout=10,
        what="back to normal after the delivery",
    )
    assert [q["mode"] for q in queue_status(d)] == ["normal"]
    assert d.stop() == 0
    [deferred] = rows(d, "t")
    assert deferred["rcpt"] == "slow@example.org" and deferred["dsnStatus"] == "4.7.28"


def test_manual_backoff_and_normal_through_the_control_socket(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(
        domain_defaults='[domain."example.org"]\nmax-smtp-out = 5\nbackoff-max-smtp-out = 1'
    )
    d.start()
    send(d, ["first@example.org"])  # the queue exists once mail went through it
    sink.wait_for_messages_sync(1, timeout=10)
    reply = control(d, {"cmd": "backoff", "queue": "example.org"})
    assert reply == {"ok": True, "queues": 1}
    [queue] = queue_status(d)
    assert queue["mode"] == "backoff" and queue["window"] == 1
    wait_until(lambda: bool(rows(d, "q")), timeout=5, what="backoff record")
    [entered] = rows(d, "q")
    assert entered["dsnAction"] == "backoff" and entered["queue"] == queue["name"]
    # backoff-max-smtp-out applies to the mail that follows
    wait_until(lambda: sink.current_connections == 0, timeout=5, what="idle connection closed")
    sink.max_concurrent = 0
    inject(d, ["a@example.org"], 20)
    sink.wait_for_messages_sync(21, timeout=20)
    assert sink.max_concurrent == 1
    assert control(d, {"cmd": "normal", "queue": "example.org"}) == {"ok": True, "queues": 1}
    assert [q["mode"] for q in queue_status(d)] == ["normal"]
    wait_until(
        lambda: [r["dsnAction"] for r in rows(d, "q")] == ["backoff", "normal"],
        timeout=5,
        what="normal record",
    )
    assert control(d, {"cmd": "backoff", "queue": "nowhere.test"}) == {
        "ok": False,
        "error": "no delivery queue matches nowhere.test",
    }
    assert d.stop() == 0


def test_queue_priority_gets_the_next_free_slot(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, sink2: ScriptedSmtpServer
) -> None:
    d = make_daemon(
        relay_domains=("example.org", "fast.test"),
        domain_defaults=(
            '[domain."example.org"]\nmax-msg-rate = "10/s"\nmax-msg-per-connection = 2\n'
            '[domain."fast.test"]\nqueue-priority = 90\n'
        ),
    )
    set_server_option(d, "max-delivery-concurrency = 1")
    d.start()
    inject(d, ["low@example.org"], 20)  # about 2 s at 10/s, one connection at a time
    sink.wait_for_messages_sync(3, timeout=10)
    submitted = time.time()
    send(d, ["high@fast.test"])
    [high] = sink2.wait_for_messages_sync(1, timeout=15)
    low = sink.wait_for_messages_sync(20, timeout=15)
    last_low = max(m.arrived_at for m in low)
    # The next connection slot after the submission goes to the high-priority queue: it
    # must not wait behind the low-priority backlog (one 2-message connection, ~0.2 s).
    assert high.arrived_at < last_low, (high.arrived_at - submitted, last_low - submitted)
    assert high.arrived_at - submitted < 1.0, high.arrived_at - submitted
    assert sink.max_concurrent == 1 and sink2.max_concurrent == 1
    assert d.stop() == 0


# -- required and verified STARTTLS -------------------------------------------------------


def require_tls(ca: Path) -> str:
    return (
        f'[domain."example.org"]\nrequire-starttls = true\ntls-verify = "ca+hostname"\n'
        f'tls-ca-file = "{ca}"\n'
    )


def test_require_starttls_verified_delivers_over_tls(
    make_daemon: Callable[..., DaemonHandle], tls_sink: ScriptedSmtpServer, ca_file: Path
) -> None:
    d = make_daemon(domain_defaults=require_tls(ca_file))
    d.start()
    send(d, ["a@example.org"])
    [msg] = tls_sink.wait_for_messages_sync(1, timeout=10)
    assert msg.tls
    session = tls_sink.sessions[msg.session]
    assert session.tls and session.tls_version in ("TLSv1.2", "TLSv1.3")
    assert d.stop() == 0
    assert [r["type"] for r in d.accounting_rows()] == ["d"]


def test_require_starttls_with_unknown_ca_defers_4_7_5(
    make_daemon: Callable[..., DaemonHandle], tls_sink: ScriptedSmtpServer, unknown_ca_file: Path
) -> None:
    d = make_daemon(domain_defaults=require_tls(unknown_ca_file))
    d.start()
    send(d, ["a@example.org"])
    wait_until(lambda: bool(rows(d, "t")), timeout=10, what="deferral")
    first = rows(d, "t")[0]
    assert first["rcpt"] == "a@example.org" and first["dsnStatus"] == "4.7.5"
    assert "certificate verify failed" in first["dsnDiag"]
    # The sink counts its side of the failed handshake when it notices: a moment later.
    wait_until(lambda: tls_sink.tls_failures >= 1, timeout=10, what="the sink's TLS failure")
    assert tls_sink.messages == []
    assert d.stop() == 0
    log = d.log_text()
    assert "TLS required for mx1.example.org" in log
    assert "certificate verify failed" in log
    assert not rows(d, "d")


def test_require_starttls_not_offered_defers_4_7_4(
    make_daemon: Callable[..., DaemonHandle], tls_sink: ScriptedSmtpServer, ca_file: Path
) -> None:
    tls_sink.script = ServerScript(omit_extensions=frozenset({"STARTTLS"}))
    d = make_daemon(domain_defaults=require_tls(ca_file))
    d.start()
    send(d, ["a@example.org"])
    wait_until(lambda: bool(rows(d, "t")), timeout=10, what="deferral")
    first = rows(d, "t")[0]
    assert first["dsnStatus"] == "4.7.4" and "STARTTLS not offered" in first["dsnDiag"]
    assert tls_sink.messages == []
    assert all("MAIL FROM" not in c.upper() for s in tls_sink.sessions for c in s.commands)
    assert d.stop() == 0
    assert not rows(d, "d")


# -- MTA-STS ------------------------------------------------------------------------------


def sts_config(https: HttpsTestServer, ca: Path, domain: str) -> dict[str, object]:
    return {
        "relay_domains": (domain,),
        "domain_defaults": f'[domain."{domain}"]\ntls-ca-file = "{ca}"\n',
        "extra": f'[mta-sts]\nhttps-port = {https.port}\nca-file = "{ca}"\n',
    }


def test_mta_sts_enforce_skips_mx_not_in_policy(
    make_daemon: Callable[..., DaemonHandle],
    tls_sink: ScriptedSmtpServer,
    sts_dns: DnsTestServer,
    sts_https: HttpsTestServer,
    ca_file: Path,
) -> None:
    d = make_daemon(**sts_config(sts_https, ca_file, "sts.test"))
    d.start()
    send(d, ["a@sts.test"])
    wait_until(lambda: bool(rows(d, "t")), timeout=10, what="deferral")
    first = rows(d, "t")[0]
    assert first["rcpt"] == "a@sts.test" and first["dsnStatus"] == "4.7.5"
    assert "MTA-STS" in first["dsnDiag"]
    assert sts_https.hits[STS_PATH] >= 1
    assert tls_sink.connections == 0 and tls_sink.messages == []
    assert d.stop() == 0
    assert "MTA-STS: MX host mx1.example.org not in the enforced policy" in d.log_text()
    assert not rows(d, "d")


def test_mta_sts_enforce_delivers_to_listed_mx_over_verified_tls(
    make_daemon: Callable[..., DaemonHandle],
    tls_sink: ScriptedSmtpServer,
    sts_dns: DnsTestServer,
    sts_https: HttpsTestServer,
    ca_file: Path,
) -> None:
    d = make_daemon(**sts_config(sts_https, ca_file, "sts-ok.test"))
    d.start()
    send(d, ["a@sts-ok.test"])
    [msg] = tls_sink.wait_for_messages_sync(1, timeout=10)
    assert msg.rcpts == ("a@sts-ok.test",) and msg.tls
    assert sts_https.hits[STS_PATH] == 1
    assert d.stop() == 0
    assert [r["type"] for r in d.accounting_rows()] == ["d"]


def test_mta_sts_enforce_holds_on_a_rolled_up_connection(
    make_daemon: Callable[..., DaemonHandle],
    sink: ScriptedSmtpServer,
    sts_dns: DnsTestServer,
    sts_https: HttpsTestServer,
    ca_file: Path,
) -> None:
    """sts.test and example.org share their MX and so one queue (mx-rollup); a connection
    opened for example.org (no MTA-STS, no TLS on offer) must not carry sts.test mail."""
    config = sts_config(sts_https, ca_file, "sts.test")
    d = make_daemon(
        relay_domains=("example.org", "sts.test"),
        domain_defaults=f"{config['domain_defaults']}"
        '[domain."example.org"]\nmax-msg-rate = "5/s"\n',
        extra=config["extra"],
    )
    d.start()
    inject(d, ["a@example.org"], 10)  # about 2 s of paced mail on rolled-up connections
    sink.wait_for_messages_sync(2, timeout=10)
    send(d, ["b@sts.test"])

    def sts_mail_settled() -> bool:
        return any("b@sts.test" in m.rcpts for m in sink.messages) or any(
            r["rcpt"] == "b@sts.test" for r in rows(d, "t")
        )

    wait_until(sts_mail_settled, timeout=10, what="sts.test mail delivered or deferred")
    assert [m.rcpts for m in sink.messages if "b@sts.test" in m.rcpts] == []
    sink.wait_for_messages_sync(10, timeout=15)
    assert d.stop() == 0
    sts_rows = [r for r in d.accounting_rows() if r["rcpt"] == "b@sts.test"]
    assert {(r["type"], r["dsnStatus"]) for r in sts_rows} == {("t", "4.7.5")}
