"""``log-format = "json"``: the real daemon (a receiver process, as shipped) writes one JSON
object per line to stderr and to ``<log-dir>/outrider.log``; a queue id from "250 queued
as" is found on its received and outcome lines; the file is reopened after logrotate
moves it, by every process.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.test_daemon_log import send
from tests.support.daemon import DaemonHandle, wait_port, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

KEYS = {"ts", "level", "process", "logger", "msg"}


def entries(text: str) -> list[dict[str, Any]]:
    """Every line must be one JSON object with the documented keys."""
    parsed = []
    for line in text.splitlines():
        entry = json.loads(line)
        assert KEYS <= set(entry) <= KEYS | {"queue_id", "exc", "stack"}, line
        parsed.append(entry)
    return parsed


def mail(entries_: list[dict[str, Any]], queue_id: str) -> list[str]:
    return [
        e["msg"].split(" ")[0]
        for e in entries_
        if e["logger"] == "outrider.mail" and e.get("queue_id") == queue_id
    ]


def test_json_lines_in_the_log_file_follow_a_queue_id_and_survive_rotation(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    sink.script = ServerScript(rcpt_replies={"gone@example.org": "550 5.1.1 no such user"})
    d = make_daemon(receiver_processes=1)
    d.edit_config("receiver-processes = 1", 'receiver-processes = 1\nlog-format = "json"')
    log_file = d.log_dir / "outrider.log"
    d.start(wait=False)
    assert d.proc is not None
    wait_port(d.host, d.port, proc=d.proc)
    wait_until(
        lambda: log_file.exists() and "started: " in log_file.read_text(), what="started line"
    )

    qid = send(d, ["b@example.org", "gone@example.org"])
    wait_until(
        lambda: (
            sorted(mail(entries(log_file.read_text()), qid)) == ["bounced", "delivered", "received"]
        ),
        what="received, delivered and bounced objects",
    )
    first = entries(log_file.read_text())
    assert {"delivery", "receiver-0"} <= {e["process"] for e in first}
    (received,) = (e for e in first if e.get("queue_id") == qid and "received" in e["msg"])
    assert received["msg"].startswith("received from=<a@sender.test> size=")
    assert received["level"] == "INFO" and received["ts"].endswith("Z")

    # logrotate: rename, no signal. Both processes write the new file within a second or so.
    log_file.rename(d.log_dir / "outrider.log.1")
    time.sleep(1.1)  # past the once-a-second look at the path
    second = send(d, ["b@example.org"])
    wait_until(
        lambda: log_file.exists() and "delivered" in mail(entries(log_file.read_text()), second),
        what="the next message's lines in the new file",
    )
    assert d.stop() == 0
    rotated = entries((d.log_dir / "outrider.log.1").read_text())
    fresh = entries(log_file.read_text())
    assert mail(rotated, second) == [] and mail(fresh, qid) == []
    assert {"delivery", "receiver-0"} <= {e["process"] for e in fresh}  # the receiver too
    assert fresh[-1]["msg"] == "stopped"

    # stderr holds the same objects (one per line) as the two files together
    stderr = [e for e in entries(d.log_text()) if e["logger"] == "outrider.mail"]
    files = [e for e in rotated + fresh if e["logger"] == "outrider.mail"]
    assert stderr == files
    assert mail(files, f"{qid}-F") == ["received", "delivered"]  # the bounce's DSN


def test_a_reload_switches_every_process_to_json(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(receiver_processes=1)
    d.start()
    log_file = d.log_dir / "outrider.log"
    text_lines = len(log_file.read_text().splitlines())
    d.edit_config("receiver-processes = 1", 'receiver-processes = 1\nlog-format = "json"')
    d.signal(signal.SIGHUP)
    wait_until(
        lambda: '"msg": "configuration reloaded from ' in log_file.read_text(),
        what="the reload logged in JSON",
    )
    qid = send(d, ["b@example.org"])
    wait_until(
        lambda: "delivered" in mail(entries_after(log_file, text_lines), qid),
        what="the mail lines in JSON",
    )
    assert d.stop() == 0
    after = entries_after(log_file, text_lines)  # every line since the reload is JSON
    assert {"delivery", "receiver-0"} <= {e["process"] for e in after}


def entries_after(path: Path, skip: int) -> list[dict[str, Any]]:
    """The JSON lines after the first ``skip`` (text) lines; the text ones written by the
    reload itself (the receiver may log before it reloads) are left out."""
    lines = path.read_text().splitlines()[skip:]
    return entries("\n".join(line for line in lines if line.startswith("{")))
