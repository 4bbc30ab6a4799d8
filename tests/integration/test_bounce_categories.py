"""Bounce categories in the running daemon: ``outrider run`` as a subprocess, a loopback
sink answering 550 5.1.1 and 452 4.2.2, and what the accounting CSV, the daemon log and
``/metrics`` say; an administrator's rules file, and a reload that changes it."""

from __future__ import annotations

import smtplib
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.support.daemon import DaemonHandle, control, free_port, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript
from tests.unit.http.test_metrics import parse, value

SENDER = "a@sender.test"
WAIT = 30.0  # generous: other test runs share the machine
UNKNOWN = "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown"
FULL = "452 4.2.2 <full@example.org>: Mailbox full, try again later"
CUSTOM = "550 5.7.1 <moved@example.org>: Frobnicated by site policy 42"


def send(d: DaemonHandle, rcpts: list[str]) -> None:
    with smtplib.SMTP(d.host, d.port, timeout=20) as client:
        client.sendmail(SENDER, rcpts, b"Subject: cats\r\n\r\nhello\r\n")


def categories(d: DaemonHandle, kind: str) -> dict[str, str]:
    return {r["rcpt"]: r["bounceCat"] for r in d.accounting_rows() if r["type"] == kind}


def test_accounting_log_metrics_and_log_line_carry_the_category(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, tmp_path: Path
) -> None:
    sink.script = ServerScript(
        rcpt_replies={
            "gone@example.org": UNKNOWN,
            "full@example.org": FULL,
            "moved@example.org": CUSTOM,
        }
    )
    rules = tmp_path / "bounce-rules.txt"
    rules.write_text("# site rules\n/frobnicated by site policy/ inactive-mailbox\n")
    http_port = free_port()
    d = make_daemon(
        receiver_processes=1,
        extra=(
            '[domain."example.org"]\nretry-after = ["1h"]\n'
            '[accounting]\nrecords = ["d", "b", "t"]\n'
            f'[http]\naddress = "127.0.0.1:{http_port}"\n'
            f'[bounce-categories]\nrules-file = "{rules}"\n'
        ),
    )
    d.start()
    send(d, ["ok@example.org", "gone@example.org", "full@example.org", "moved@example.org"])
    wanted = {
        "gone@example.org": "bad-mailbox",
        "moved@example.org": "inactive-mailbox",  # the administrator's rule, before 5.7.1
    }
    wait_until(lambda: categories(d, "b") == wanted, timeout=WAIT, what="b rows")
    wait_until(lambda: "full@example.org" in categories(d, "t"), timeout=WAIT, what="t row")
    assert categories(d, "t") == {"full@example.org": "quota-issues"}
    assert categories(d, "d") == {"ok@example.org": ""}
    wait_until(
        lambda: "status=5.1.1 category=bad-mailbox (550" in d.log_text(),
        timeout=WAIT,
        what="the bounce's log line with its category",
    )

    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=30) as resp:
        families = parse(resp.read().decode())
    assert value(families, "outrider_bounces_total", bounce_category="bad-mailbox") == 1
    assert value(families, "outrider_bounces_total", bounce_category="inactive-mailbox") == 1
    assert value(families, "outrider_bounces_total", bounce_category="spam-related") == 0

    # A reload re-reads the rules file; a broken one is refused with its file and line.
    rules.write_text("/frobnicated/ nonsense\n")
    reply = control(d, {"cmd": "reload"})
    assert reply["ok"] is False
    assert f"{rules}:1: unknown category 'nonsense'" in str(reply["error"])
    rules.write_text("/frobnicated by site policy/ spam-related\n")
    assert control(d, {"cmd": "reload"})["ok"] is True
    send(d, ["moved@example.org"])
    wait_until(
        lambda: (
            sum(
                r["bounceCat"] == "spam-related"
                for r in d.accounting_rows()
                if r["rcpt"] == "moved@example.org"
            )
            == 1
        ),
        timeout=WAIT,
        what="the second bounce under the new rules",
    )
    assert d.stop() == 0
