"""PowerMTA's columns from the real daemon, ``[accounting] fields`` and ``outrider acct find``.

``outrider run`` as a subprocess; mail sent with smtplib; ``outrider acct find`` run as
a command against the files the daemon wrote (a compressed copy included).
"""

from __future__ import annotations

import csv
import gzip
import io
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable

from outrider.accounting.records import DEFAULT_FIELDS, POWERMTA_FIELDS
from tests.support.daemon import DaemonHandle, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

SENDER = "a@sender.test"
WAIT = 30.0


def send(d: DaemonHandle, rcpts: list[str], job: str) -> None:
    content = f"From: {SENDER}\r\nX-Job: {job}\r\nSubject: acct\r\n\r\nhi\r\n"
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        client.ehlo("client.test")
        code, _ = client.mail(SENDER)
        assert code == 250
        for rcpt in rcpts:
            assert client.rcpt(rcpt)[0] == 250
        assert client.data(content.encode())[0] == 250


def acct(d: DaemonHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outrider", "acct", "find", "-c", str(d.config_path), *args],
        cwd=d.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_powermta_columns_and_acct_find(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"gone@example.org": "550 5.1.1 no such user"})
    d = make_daemon()
    d.start()
    send(d, ["ann@example.org", "gone@example.org"], "job-1")
    send(d, ["bob@example.org"], "job-2")
    wait_until(
        lambda: len([r for r in d.accounting_rows() if r["type"] in "db"]) >= 3,
        timeout=WAIT,
        what="d and b rows",
    )
    assert d.stop() == 0
    [path] = d.log_dir.glob("acct-*.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    # PowerMTA's columns first, in PowerMTA's order; then Outrider's.
    assert header == list(DEFAULT_FIELDS)
    assert header[: len(POWERMTA_FIELDS)] == list(POWERMTA_FIELDS)
    rows = d.accounting_rows()
    [ann] = [r for r in rows if r["rcpt"] == "ann@example.org"]
    assert ann["type"] == "d" and ann["srcMta"] == "client.test (127.0.0.1)"
    offered = ann["dlvEsmtpAvailable"].split(" ")
    assert {"PIPELINING", "8BITMIME", "CHUNKING"} <= set(offered), offered
    assert (ann["vmta"], ann["vmtaPool"]) == ("default", "")
    assert ann["queue"].endswith("/default")
    assert ann["dlvType"] == "smtp" and ann["jobId"] == "job-1"

    since = time.strftime("%Y-%m-%dT00:00", time.gmtime(time.time() - 86_400))
    found = acct(d, "--rcpt", "ANN@example.org", "--since", since)
    assert found.returncode == 0, found.stderr
    out = list(csv.DictReader(io.StringIO(found.stdout)))
    assert [(r["type"], r["rcpt"]) for r in out] == [("d", "ann@example.org")]
    assert found.stdout.startswith(",".join(DEFAULT_FIELDS) + "\n")  # text mode: CRLF read as LF

    by_job = acct(d, "--job", "job-1", "--type", "b")
    assert [r["rcpt"] for r in csv.DictReader(io.StringIO(by_job.stdout))] == ["gone@example.org"]
    assert acct(d, "--job", "job-1", "--until", "2000-01-01T00:00").returncode == 1

    # A file the administrator compressed is searched too.
    gz = path.with_name(path.name.replace(".csv", ".1.csv.gz"))
    gz.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    again = acct(d, "--job", "job-2")
    assert [r["rcpt"] for r in csv.DictReader(io.StringIO(again.stdout))] == ["bob@example.org"]
    bad = acct(d, "--since", "yesterday")
    assert bad.returncode == 2 and "not a time" in bad.stderr


def test_configured_fields_and_unknown_field(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(
        extra=(
            '[accounting]\nfields = ["type", "rcpt", "dsnStatus", "vmta", "vmtaPool"]\n'
            '[virtual-mta.a]\nsmtp-source-host = "127.0.0.10 a.outrider.test"\n'
            '[virtual-mta-pool.pool]\nvirtual-mtas = ["a"]\n'
            '[sender-domain."sender.test"]\nvirtual-mta = "pool"\n'
        )
    )
    d.start()
    send(d, ["ann@example.org"], "job-1")
    wait_until(lambda: bool(d.accounting_rows()), timeout=WAIT, what="a row")
    assert d.stop() == 0
    [path] = d.log_dir.glob("acct-*.csv")
    lines = path.read_bytes().decode().split("\r\n")
    assert lines[0] == "type,rcpt,dsnStatus,vmta,vmtaPool"
    assert lines[1] == "d,ann@example.org,2.0.0,a,pool"

    bad = make_daemon(extra='[accounting]\nfields = ["type", "rcpt", "recipient"]\n')
    check = subprocess.run(
        [sys.executable, "-m", "outrider", "check-config", "-c", str(bad.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1
    assert "accounting.fields[2]" in check.stderr and "'recipient'" in check.stderr
    assert "outrider.toml:" in check.stderr
