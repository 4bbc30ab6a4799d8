"""Traffic shaping end to end: the daemon against a recording SMTP sink on loopback."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from tests.support.daemon import (
    THROTTLE_PATTERNS,
    THROTTLED_REPLY,
    DaemonHandle,
    control,
    inject,
    rows,
    wait_until,
)
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript


def test_connections_never_exceed_max_smtp_out(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(
        domain_defaults='[domain."example.org"]\nmax-smtp-out = 3\nmax-msg-per-connection = 5'
    )
    d.start()
    inject(d, ["a@example.org"], 60)
    sink.wait_for_messages_sync(60, timeout=30)
    assert sink.max_concurrent <= 3
    per_session = Counter(m.session for m in sink.messages)
    assert max(per_session.values()) <= 5
    assert len(per_session) >= 12  # 60 messages, at most 5 per connection
    assert d.stop() == 0


def test_message_rate_is_smooth_and_within_ten_percent(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(domain_defaults='[domain."example.org"]\nmax-msg-rate = "20/s"')
    d.start()
    inject(d, ["a@example.org"], 70)
    msgs = sink.wait_for_messages_sync(70, timeout=30)
    times = sorted(m.arrived_at for m in msgs)
    # Skip the first few (the injector may still be ramping up) and measure the rest.
    window = times[5:]
    rate = (len(window) - 1) / (window[-1] - window[0])
    assert 18.0 <= rate <= 22.0, rate
    # No bursts: GCRA spaces messages 50 ms apart, so any ten in a row span 0.45 s. One
    # message's arrival can lag (a loaded machine) and close its gap to the next, so the
    # check is over runs of ten, with 150 ms of slack: a burst would take milliseconds.
    spans = [b - a for a, b in zip(window, window[9:], strict=False)]
    assert min(spans) > 0.3, min(spans)
    assert d.stop() == 0


def test_mx_rollup_domains_share_one_queue_and_its_limits(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(
        relay_domains=("rollup-a.test", "rollup-b.test"),
        domain_defaults='max-smtp-out = 2\n[domain."rollup-a.test"]\nmax-smtp-out = 2',
    )
    d.start()
    inject(d, ["x@rollup-a.test", "y@rollup-b.test"], 40)
    sink.wait_for_messages_sync(40, timeout=30)
    assert sink.max_concurrent <= 2
    status = control(d, {"cmd": "status"})["status"]
    names = [q["name"] for q in status["queues"]]  # type: ignore[index]
    assert names == ["mx:mx.provider.test/default"]
    assert d.stop() == 0


def test_virtual_mta_source_address_and_ehlo_name(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(
        extra='[virtual-mta.mta10]\nsmtp-source-host = "127.0.0.10 mta10.outrider.test"\n'
        '[sender-domain."sender.test"]\nvirtual-mta = "mta10"\n'
    )
    d.start()
    inject(d, ["a@example.org"], 2)
    msgs = sink.wait_for_messages_sync(2, timeout=10)
    assert {m.peer[0] for m in msgs} == {"127.0.0.10"}
    assert {m.helo for m in msgs} == {"mta10.outrider.test"}
    assert d.stop() == 0
    delivered = rows(d, "d")
    assert {r["vmta"] for r in delivered} == {"mta10"}
    assert {r["dlvSourceIp"] for r in delivered} == {"127.0.0.10"}


def test_x_virtual_mta_header_honoured_only_when_allowed(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(
        extra='[virtual-mta.mta11]\nsmtp-source-host = "127.0.0.11 mta11.outrider.test"\n'
    )
    d.edit_config(
        "max-rcpt-per-message = 100", "max-rcpt-per-message = 100\nprocess-x-virtual-mta = true"
    )
    d.start()
    inject(d, ["a@example.org"], 1, headers=b"X-Virtual-MTA: mta11\r\n")
    [msg] = sink.wait_for_messages_sync(1, timeout=10)
    assert msg.peer[0] == "127.0.0.11"
    assert b"X-Virtual-MTA" not in msg.data
    assert d.stop() == 0


def test_backoff_mode_on_matching_421_and_back_to_normal(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"slow@example.org": THROTTLED_REPLY})
    d = make_daemon(
        domain_defaults=(
            '[domain."example.org"]\nsmtp-pattern-list = "throttle"\nmax-smtp-out = 5\n'
            'backoff-max-smtp-out = 1\nbackoff-to-normal-after = "2s"\n'
        ),
        extra=THROTTLE_PATTERNS,
    )
    d.start()
    inject(d, ["slow@example.org"], 1)
    wait_until(lambda: bool(rows(d, "q")), timeout=10, what="backoff record")
    [entered] = rows(d, "q")
    assert entered["dsnAction"] == "backoff"
    assert entered["rule"] == "rate limited"
    assert "4.7.28" in entered["dsnDiag"]
    status = control(d, {"cmd": "status"})["status"]
    assert [q["mode"] for q in status["queues"]] == ["backoff"]  # type: ignore[index]
    # While in backoff only one connection is used.
    sink.script = ServerScript()
    inject(d, ["ok@example.org"], 20)
    sink.wait_for_messages_sync(20, timeout=20)
    assert sink.max_concurrent == 1
    wait_until(
        lambda: [r["dsnAction"] for r in rows(d, "q")] == ["backoff", "normal"],
        timeout=10,
        what="return to normal",
    )
    assert d.stop() == 0


def test_disable_source_ip_moves_traffic_to_the_other_pool_member(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(
        greeting_by_peer={
            "127.0.0.10": "421 4.7.0 [TSS04] Messages from 127.0.0.10 temporarily deferred"
        }
    )
    d = make_daemon(
        domain_defaults='[domain."example.org"]\nsmtp-pattern-list = "yahoo"\n',
        extra=(
            '[virtual-mta.a]\nsmtp-source-host = "127.0.0.10 a.outrider.test"\n'
            '[virtual-mta.b]\nsmtp-source-host = "127.0.0.11 b.outrider.test"\n'
            '[virtual-mta-pool.pool]\nvirtual-mtas = ["a", "b"]\n'
            '[sender-domain."sender.test"]\nvirtual-mta = "pool"\n'
            "[smtp-pattern-list.yahoo]\n"
            'rules = [{ reply = "TSS04", action = "disable-source-ip" }]\n'
        ),
    )
    d.start()
    inject(d, ["a@example.org"], 10)
    msgs = sink.wait_for_messages_sync(10, timeout=20)
    assert {m.peer[0] for m in msgs} == {"127.0.0.11"}
    records = rows(d, "q")
    assert [r["dsnAction"] for r in records][:1] == ["source-ip-disabled"]
    assert records[0]["vmta"] == "a"
    assert d.stop() == 0


def test_paused_queue_sends_nothing_survives_restart_and_resumes(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon()
    d.start()
    assert control(d, {"cmd": "pause", "queue": "example.org"})["ok"] is True
    inject(d, ["a@example.org"], 3)
    time.sleep(1.0)
    assert sink.messages == []
    assert d.stop() == 0
    d.start()
    time.sleep(1.0)
    assert sink.messages == []
    status = control(d, {"cmd": "status"})["status"]
    assert status["paused_queues"] == ["example.org"]  # type: ignore[index]
    assert control(d, {"cmd": "resume", "queue": "example.org"}) == {"ok": True}
    sink.wait_for_messages_sync(3, timeout=10)
    assert d.stop() == 0


def test_paused_job_holds_only_that_job(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon()
    d.start()
    assert control(d, {"cmd": "pause-job", "job": "spring"})["ok"] is True
    inject(d, ["a@example.org"], 2, headers=b"X-Job: spring\r\n")
    inject(d, ["b@example.org"], 1, headers=b"X-Job: other\r\n")
    [other] = sink.wait_for_messages_sync(1, timeout=10)
    assert other.rcpts == ("b@example.org",)
    time.sleep(0.5)
    assert len(sink.messages) == 1
    assert control(d, {"cmd": "resume-job", "job": "spring"}) == {"ok": True}
    sink.wait_for_messages_sync(3, timeout=10)
    assert d.stop() == 0


def test_a_throttled_domain_does_not_delay_another(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, sink2: ScriptedSmtpServer
) -> None:
    d = make_daemon(
        relay_domains=("example.org", "fast.test"),
        domain_defaults='[domain."example.org"]\nmax-msg-rate = "2/s"\n',
    )
    d.start()
    inject(d, ["slow@example.org"], 200)
    start = time.monotonic()
    inject(d, ["quick@fast.test"], 1)
    [fast] = sink2.wait_for_messages_sync(1, timeout=5)
    assert fast.rcpts == ("quick@fast.test",)
    assert time.monotonic() - start < 2.0
    assert len(sink.messages) < 20  # the throttled domain is still being paced
    assert d.stop() == 0


def test_421_means_mx_unavailable_moves_to_the_next_mx(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, sink2: ScriptedSmtpServer
) -> None:
    sink2.script = ServerScript(mail_reply="421 4.3.2 Service not available, try another MX")
    d = make_daemon(
        relay_domains=("two-live.test",),
        domain_defaults='[domain."two-live.test"]\nsmtp-421-means-mx-unavailable = true\n',
    )
    d.start()
    inject(d, ["x@two-live.test"], 1)
    [msg] = sink.wait_for_messages_sync(1, timeout=10)
    assert msg.rcpts == ("x@two-live.test",)
    assert d.stop() == 0
    assert [r["type"] for r in d.accounting_rows()] == ["d"]


def test_bounce_upon_no_mx(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(
        relay_domains=("implicit.test",),
        domain_defaults='[domain."implicit.test"]\nbounce-upon-no-mx = true\n',
    )
    d.start()
    inject(d, ["x@implicit.test"], 1)
    [dsn] = sink.wait_for_messages_sync(1, timeout=10)
    assert dsn.mail_from == "" and b"Status: 5.4.4" in dsn.data
    assert d.stop() == 0


def test_paused_job_stays_paused_across_a_restart(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon()
    d.start()
    assert control(d, {"cmd": "pause-job", "job": "autumn"})["ok"] is True
    inject(d, ["a@example.org"], 2, headers=b"X-Job: autumn\r\n")
    time.sleep(0.5)
    assert d.stop() == 0
    d.start()
    time.sleep(1.0)
    assert sink.messages == []
    status = control(d, {"cmd": "status"})["status"]
    assert status["paused_jobs"] == ["autumn"]  # type: ignore[index]
    assert control(d, {"cmd": "resume-job", "job": "autumn"}) == {"ok": True}
    sink.wait_for_messages_sync(2, timeout=10)
    assert d.stop() == 0


def test_slow_rate_closes_idle_connections_and_reopens_in_time(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    # One message every 1.5 s, connections may idle 0.5 s: each message gets its own
    # connection instead of one held open (and timed out by the server) in between.
    d = make_daemon(domain_defaults='[domain."example.org"]\nmax-msg-rate = "2/3s"\n')
    d.start()
    inject(d, ["a@example.org"], 3)
    msgs = sink.wait_for_messages_sync(3, timeout=15)
    times = sorted(m.arrived_at for m in msgs)
    assert times[2] - times[0] >= 2.8
    assert len({m.session for m in msgs}) == 3
    assert d.stop() == 0


def test_pausing_one_domain_of_a_rolled_up_queue_holds_only_that_domain(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(relay_domains=("rollup-a.test", "rollup-b.test"))
    d.start()
    assert control(d, {"cmd": "pause", "queue": "rollup-b.test"})["ok"] is True
    inject(d, ["x@rollup-a.test", "y@rollup-b.test"], 4)
    msgs = sink.wait_for_messages_sync(2, timeout=10)
    time.sleep(0.5)
    assert {r for m in sink.messages for r in m.rcpts} == {"x@rollup-a.test"}
    assert len(msgs) == 2
    status = control(d, {"cmd": "status"})["status"]
    assert status["held"] == {"domain:rollup-b.test": 2}  # type: ignore[index]
    assert control(d, {"cmd": "resume", "queue": "rollup-b.test"}) == {"ok": True}
    sink.wait_for_messages_sync(4, timeout=10)
    assert d.stop() == 0


def test_backoff_mode_survives_a_restart(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"slow@example.org": "421 4.7.28 rate limited"})
    d = make_daemon(
        domain_defaults=(
            '[domain."example.org"]\nsmtp-pattern-list = "throttle"\nmax-smtp-out = 5\n'
            "backoff-max-smtp-out = 1\n"
        ),
        extra=THROTTLE_PATTERNS,
    )
    d.start()
    inject(d, ["slow@example.org"], 1)
    wait_until(lambda: bool(rows(d, "q")), timeout=10, what="backoff record")
    assert d.stop() == 0
    sink.script = ServerScript()
    d.start()
    inject(d, ["ok@example.org"], 12)
    sink.wait_for_messages_sync(12, timeout=20)
    assert sink.max_concurrent == 1  # still backing off after the restart
    status = control(d, {"cmd": "status"})["status"]
    modes = {q["name"]: q["mode"] for q in status["queues"]}  # type: ignore[index]
    assert set(modes.values()) == {"backoff"}
    assert control(d, {"cmd": "normal", "queue": "example.org"})["ok"] is True
    assert d.stop() == 0
