"""The console commands against the real daemon (shipped defaults: uvloop, a receiver
process), run as an operator would: ``outrider show queues -c FILE --json`` and so on."""

from __future__ import annotations

import json
import select
import smtplib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from tests.support.daemon import DaemonHandle, rows, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

LATER = "451 4.7.1 try again later"
SLOW_RETRY = '[domain."example.org"]\nretry-after = ["1h"]\n'


def outrider(d: DaemonHandle, *args: str) -> subprocess.CompletedProcess[str]:
    """One console command, from the daemon's directory (its paths are relative)."""
    return subprocess.run(
        [sys.executable, "-m", "outrider", *args, "-c", str(d.config_path)],
        cwd=d.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def outrider_json(d: DaemonHandle, *args: str) -> Any:
    done = outrider(d, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def send(d: DaemonHandle, rcpts: list[str], headers: bytes = b"") -> None:
    with smtplib.SMTP(d.host, d.port, timeout=20) as s:
        s.sendmail("me@sender.test", rcpts, headers + b"Subject: console\r\n\r\nhello\r\n")


def example_queue(d: DaemonHandle) -> dict[str, Any] | None:
    found = outrider_json(d, "show", "queues", "--domain", "example.org")
    return found[0] if found else None


def test_find_inspect_retry_and_delete_deferred_mail(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"later@example.org": LATER})
    d = make_daemon(receiver_processes=1, extra=SLOW_RETRY)
    d.start()
    send(d, ["later@example.org"], b"X-Job: spring\r\n")
    send(d, ["now@example.org"])
    sink.wait_for_messages_sync(1, timeout=20)

    # Deferred mail waits for its retry time in its queue, with when and why.
    wait_until(lambda: (example_queue(d) or {}).get("recipients") == 1, 20, "deferred in queue")
    queue = example_queue(d)
    assert queue is not None
    # mx-rollup (the default) names the queue by the domain's MX hosts
    assert queue["queue"] == "mx:mx1.example.org/default"
    assert (queue["domain"], queue["vmta"], queue["messages"], queue["mode"]) == (
        "example.org",
        "default",
        1,
        "normal",
    )
    assert queue["next_attempt"] is not None and "try again later" in queue["last_error"]
    table = outrider(d, "show", "queues")
    assert table.returncode == 0 and "mx:mx1.example.org/default" in table.stdout

    [listed] = outrider_json(d, "list", "--rcpt", "later@example.org")
    assert (listed["job"], listed["attempts"], listed["state"]) == ("spring", 1, "deferred")
    queue_id = listed["id"]
    detail = outrider_json(d, "show", "message", queue_id)
    assert detail["sender"] == "me@sender.test"
    assert "Subject: console" in detail["headers"]
    assert detail["recipients"][0]["rcpt"] == "later@example.org"
    assert outrider_json(d, "show", "jobs") == [
        {"job": "spring", "recipients": 1, "messages": 1, "paused": False}
    ]

    status = outrider_json(d, "show", "status")
    assert status["spool"]["messages"] == 1 and status["spool"]["free_bytes"] > 0
    assert status["traffic"]["total"]["received"] == 2
    assert status["traffic"]["last_minute"]["delivered"] == 1
    assert status["traffic"]["total"]["deferred"] == 1

    # Make it go now, well before its 1 h retry time.
    sink.script = ServerScript()
    assert outrider_json(d, "retry", "--queue", "example.org") == {"retried": 1, "matched": 1}
    sink.wait_for_messages_sync(2, timeout=20)
    wait_until(lambda: example_queue(d) is None, 20, "queue drained")

    # Make it stop: delete a deferred recipient, with an accounting record.
    sink.script = ServerScript(rcpt_replies={"later@example.org": LATER})
    send(d, ["later@example.org"])
    wait_until(lambda: (example_queue(d) or {}).get("recipients") == 1, 20, "deferred again")
    [again] = outrider_json(d, "list", "--queue", "example.org")
    assert outrider_json(d, "delete", "--message", again["id"]) == {"deleted": 1, "busy": 0}
    wait_until(lambda: again["id"] not in "".join(d.spool_files()), 20, "spool file removed")
    wait_until(lambda: len(rows(d, "b")) == 1, 20, "accounting record of the removal")
    assert "by the operator" in rows(d, "b")[0]["dsnDiag"]
    assert example_queue(d) is None
    assert d.stop() == 0


def test_hold_pause_and_clear_errors(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"later@example.org": LATER})
    d = make_daemon(receiver_processes=1, extra=SLOW_RETRY)
    d.start()
    with smtplib.SMTP(d.host, d.port, timeout=20) as client:
        client.ehlo()  # held by the receiver process; the daemon still counts it
        assert outrider_json(d, "show", "status")["connections"]["in"] == 1
    send(d, ["later@example.org"])
    wait_until(lambda: (example_queue(d) or {}).get("recipients") == 1, 20, "deferred")
    [listed] = outrider_json(d, "list")
    assert outrider_json(d, "hold", "--message", listed["id"]) == {"held": 1, "matched": 1}
    sink.script = ServerScript()
    assert outrider(d, "retry", "--all").returncode == 0
    assert outrider_json(d, "list")[0]["state"] == "held"
    assert len(sink.messages) == 0
    assert outrider(d, "release", "--message", listed["id"]).returncode == 0
    sink.wait_for_messages_sync(1, timeout=20)

    done = outrider(d, "pause", "queue", "example.org")
    assert done.returncode == 0
    assert outrider(d, "resume", "queue", "example.org").returncode == 0
    for args, error in (
        (("resume", "queue", "nowhere.test"), "queue nowhere.test is not paused"),
        (("resume", "job", "nojob"), "job nojob is not paused"),
        (("set", "queue", "nowhere.test", "--mode", "backoff"), "no delivery queue matches"),
        (("retry", "--queue", "nowhere.test"), "no queued mail for queue nowhere.test"),
        (("delete", "--rcpt", "nobody@example.org"), "no queued mail for recipient"),
        (("show", "message", "NOPE"), "no queued message NOPE"),
        (("disable", "source", "127.0.0.99"), "no virtual MTA sends from 127.0.0.99"),
        (("enable", "source", "127.0.0.99"), "source 127.0.0.99 is not disabled"),
    ):
        failed = outrider(d, *args)
        assert failed.returncode == 1, args
        assert error in failed.stderr, (args, failed.stderr)
    assert d.stop() == 0
    stopped = outrider(d, "show", "status")
    assert stopped.returncode == 1
    assert "the daemon is not running" in stopped.stderr


def test_reload_reports_its_verdict_and_tail_follows_the_log(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(receiver_processes=1)
    d.start()
    done = outrider(d, "reload")
    assert done.returncode == 0 and "configuration reloaded" in done.stdout
    d.edit_config("max-rcpt-per-message = 100", 'max-rcpt-per-message = "lots"')
    refused = outrider(d, "reload")
    assert refused.returncode == 1
    assert "reload refused, the running config stays" in refused.stderr
    assert "max-rcpt-per-message" in refused.stderr

    def running_limit() -> object:
        shown = outrider_json(d, "show", "config")
        assert shown["source"] == str(d.config_path)
        return shown["config"]["listener"][0]["max-rcpt-per-message"]

    assert running_limit() == 100  # the running config, not the broken file
    d.edit_config('max-rcpt-per-message = "lots"', "max-rcpt-per-message = 50")
    assert running_limit() == 100
    assert outrider_json(d, "reload")["warnings"] == []
    assert running_limit() == 50
    effective = outrider_json(d, "show", "config", "--effective")["config"]
    assert effective["server"]["hostname"] == "mta.outrider.test"
    assert effective['domain."*"']["retry-after"] == [1.0]
    assert "[server]" in outrider(d, "show", "config").stdout

    command = ["tail", "--json", "--type", "d", "-n", "0", "-c", str(d.config_path)]
    tail = subprocess.Popen(
        [sys.executable, "-m", "outrider", *command],
        cwd=d.workdir,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stdout is not None
        ready, _, _ = select.select([tail.stdout], [], [], 1.0)
        assert not ready  # nothing shown before mail flows (-n 0)
        send(d, ["tailed@example.org"])
        ready, _, _ = select.select([tail.stdout], [], [], 30)
        assert ready, "no accounting row followed"
        row = json.loads(tail.stdout.readline())
        assert (row["type"], row["rcpt"]) == ("d", "tailed@example.org")
    finally:
        tail.kill()
        tail.wait()
        if tail.stdout is not None:
            tail.stdout.close()
    assert d.stop() == 0


def test_route_says_where_mail_would_go_and_why(
    make_daemon: Callable[..., DaemonHandle], mx_port: int
) -> None:
    d = make_daemon(receiver_processes=1, extra=SLOW_RETRY)
    d.start()
    route = outrider_json(d, "route", "User@Example.org")
    assert (route["domain"], route["delivery"], route["relay_domain"]) == (
        "example.org",
        "mx",
        True,
    )
    assert route["hosts"] == [
        {"host": "mx1.example.org", "port": mx_port, "preference": 10, "addresses": ["127.0.0.2"]}
    ]
    assert route["queues"] == ["mx:mx1.example.org/default"]
    assert route["policy"]["retry-after"] == {"value": [3600.0], "from": 'domain."example.org"'}
    assert route["policy"]["connect-timeout"] == {"value": 2.0, "from": 'domain."*"'}
    assert route["policy"]["max-smtp-out"]["from"] == "built-in default"
    assert route["tls"]["mode"] == "opportunistic"
    gone = outrider_json(d, "route", "x@nullmx.test")
    assert gone["hosts"] == [] and "nullmx.test" in gone["error"]
    assert outrider_json(d, "route", "postmaster")["postmaster_mapped_to"] == (
        "postmaster@mta.outrider.test"
    )
    human = outrider(d, "route", "user@example.org")
    assert human.returncode == 0 and "mx1.example.org" in human.stdout
    bad = outrider(d, "route", "user@example.org", "--vmta", "nope")
    assert bad.returncode == 1 and "no virtual MTA or pool named nope" in bad.stderr
    assert d.stop() == 0
