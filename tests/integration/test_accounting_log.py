"""The accounting CSV the real daemon writes: r rows, the new columns, ``[accounting]``
``records`` and ``keep``.

Run as shipped: ``outrider run`` as a subprocess with a receiver process (the message
is received in the receiver and handed to the main process, which writes the log).
"""

from __future__ import annotations

import csv
import re
import signal
import smtplib
from collections.abc import Callable
from pathlib import Path

from outrider.accounting.records import DEFAULT_FIELDS as FIELDS
from tests.support.daemon import DaemonHandle, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

SENDER = "a@sender.test"
QUEUED = re.compile(rb"queued as (\S+)")
RECORDS = '[accounting]\nrecords = ["r", "d", "b", "t"]\n'
WAIT = 30.0  # generous: other test runs share the machine


def send(d: DaemonHandle, rcpts: list[str], *, orcpt: str = "") -> str:
    """One message; returns its queue id, from the 250 reply."""
    content = f"From: {SENDER}\r\nSubject: acct\r\nMessage-ID: <m1@sender.test>\r\n\r\nhi\r\n"
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.mail(SENDER)[0] == 250
        for rcpt in rcpts:
            options = [f"ORCPT=rfc822;{orcpt}"] if orcpt and rcpt == rcpts[0] else []
            assert client.rcpt(rcpt, options)[0] == 250
        code, text = client.data(content.encode())
        assert code == 250, text
    match = QUEUED.search(text)
    assert match is not None, text
    return match.group(1).decode()


def headers(d: DaemonHandle) -> list[list[str]]:
    """The header of each day's file (one, unless the test ran across midnight)."""
    found = []
    for path in sorted(d.log_dir.glob("acct-????-??-??.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            found.append(next(csv.reader(fh)))
    return found


def row(rows: list[dict[str, str]], kind: str, queue_id: str, rcpt: str) -> dict[str, str]:
    [found] = [r for r in rows if (r["type"], r["queueId"], r["rcpt"]) == (kind, queue_id, rcpt)]
    return found


def test_received_delivered_bounced_and_dsn_rows(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"gone@example.org": "550 5.1.1 no such user"})
    d = make_daemon(receiver_processes=1, extra=RECORDS)
    d.start()
    qid = send(d, ["b@example.org", "gone@example.org"], orcpt="B@Example.org")
    dsn = f"{qid}-F"

    def done() -> bool:
        seen = {(r["type"], r["queueId"], r["rcpt"]) for r in d.accounting_rows()}
        return {
            ("d", qid, "b@example.org"),
            ("b", qid, "gone@example.org"),
            ("d", dsn, SENDER),
        } <= seen

    wait_until(done, timeout=WAIT, what="d and b rows, and the DSN's d row")
    assert d.stop() == 0
    assert headers(d) and all(h == list(FIELDS) for h in headers(d))
    rows = d.accounting_rows()

    # r: one per accepted recipient, stamped with the receipt time, before any outcome.
    received = [r for r in rows if r["type"] == "r" and r["queueId"] == qid]
    assert [r["rcpt"] for r in received] == ["b@example.org", "gone@example.org"]
    assert received[0]["orcpt"] == "rfc822;B@Example.org"
    for r in received:
        assert r["timeLogged"] == r["timeQueued"]
        assert (r["orig"], r["srcType"], r["vmta"], r["msgId"]) == (
            SENDER,
            "smtp",
            "default",
            "<m1@sender.test>",
        )
        assert int(r["size"]) > 0 and r["dlvSize"] == r["dlvType"] == r["dsnAction"] == ""
    assert rows.index(received[-1]) < rows.index(row(rows, "d", qid, "b@example.org"))

    # d and b: the queue id of the 250 reply, where the message came from, how it went.
    [sent] = [m for m in sink.messages if m.mail_from == SENDER]
    delivered = row(rows, "d", qid, "b@example.org")
    assert (delivered["dsnAction"], delivered["srcType"], delivered["dlvType"]) == (
        "relayed",
        "smtp",
        "smtp",
    )
    assert delivered["vmta"] == "default" and delivered["queue"].endswith("/default")
    assert int(delivered["dlvSize"]) == int(delivered["size"]) == len(sent.data)
    assert delivered["timeQueued"] == received[0]["timeQueued"]
    bounced = row(rows, "b", qid, "gone@example.org")
    assert (bounced["dsnStatus"], bounced["srcType"], bounced["dlvType"]) == (
        "5.1.1",
        "smtp",
        "smtp",
    )
    assert "no such user" in bounced["dsnDiag"] and bounced["bounceCat"] == "bad-mailbox"

    # The DSN is Outrider's own message: srcType local, on its r row and its d row.
    dsn_received = row(rows, "r", dsn, SENDER)
    dsn_delivered = row(rows, "d", dsn, SENDER)
    assert dsn_received["srcType"] == dsn_delivered["srcType"] == "local"
    assert dsn_received["orig"] == dsn_delivered["orig"] == ""
    assert {r["type"] for r in rows} <= {"r", "d", "b", "t"}


def test_keep_at_start_and_records_on_reload(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(receiver_processes=1, extra=RECORDS)
    d.log_dir.mkdir(parents=True)
    old = d.log_dir / "acct-2001-01-01.csv"
    old.write_bytes(b"type\r\n")
    kept = d.log_dir / "acct-2001-01-01.csv.gz"
    kept.write_bytes(b"not ours")
    d.start()
    assert not old.exists() and kept.exists()
    assert re.search(rf" INFO .*deleted {re.escape(str(old))} \(older than keep\)", d.log_text())

    first = send(d, ["b@example.org"])
    wait_until(
        lambda: any(r["queueId"] == first for r in d.accounting_rows() if r["type"] == "d"),
        timeout=WAIT,
        what="the first message delivered",
    )
    d.edit_config('records = ["r", "d", "b", "t"]', 'records = ["d"]')
    d.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in d.log_text(), what="the reload")
    second = send(d, ["b@example.org"])
    wait_until(
        lambda: any(r["queueId"] == second for r in d.accounting_rows() if r["type"] == "d"),
        timeout=WAIT,
        what="the second message delivered",
    )
    assert d.stop() == 0
    rows = d.accounting_rows()
    assert [r["type"] for r in rows if r["queueId"] == first] == ["r", "d"]
    assert [r["type"] for r in rows if r["queueId"] == second] == ["d"]
    names = {p.name for p in Path(d.log_dir).glob("acct-*")} - {kept.name}
    assert names and all(re.fullmatch(r"acct-20[2-9]\d-\d\d-\d\d\.csv", n) for n in names)
