"""Webhooks and the event log with the real daemon: ``outrider run`` as a subprocess, mail
sent with smtplib to a loopback sink, events POSTed to a loopback aiohttp receiver."""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Callable
from pathlib import Path

from outrider.webhooks.signing import verify
from tests.support.daemon import DaemonHandle, free_port, wait_until
from tests.support.smtp_server import ScriptedSmtpServer
from tests.support.webhook_receiver import WebhookReceiver

SECRET = "ab" * 32
WAIT = 30.0


def config(port: int) -> str:
    return f"""
[[webhook]]
name = "crm"
url = "http://127.0.0.1:{port}/hook"
secret-file = "hook-secret"
events = ["delivered", "bounced"]
batch-interval = "0.1s"
headers = {{ Authorization = "Bearer t0ken" }}

[event-log]
file = "log/events.jsonl"
"""


def send(d: DaemonHandle, rcpts: list[str], count: int = 1) -> None:
    with smtplib.SMTP(d.host, d.port, timeout=10) as client:
        for i in range(count):
            msg = f"From: a@sender.test\r\nSubject: {i}\r\n\r\nhi\r\n"
            client.sendmail("a@sender.test", rcpts, msg.encode())


def test_delivered_events_reach_the_receiver_and_survive_a_restart(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, tmp_path: Path
) -> None:
    port = free_port()
    receiver = WebhookReceiver(SECRET.encode(), port)
    receiver.start()
    try:
        d = make_daemon(extra=config(port))
        (d.workdir / "hook-secret").write_text(SECRET + "\n")
        d.start()
        send(d, ["one@example.org"])
        wait_until(lambda: len(receiver.events()) == 1, WAIT, "the first event")
        [event] = receiver.events()
        assert receiver.batches[0].signed
        assert event["type"] == "delivered" and event["rcpt"] == "one@example.org"
        assert event["sender"] == "a@sender.test" and event["status"].startswith("2.")
        assert event["category"] == "" and isinstance(event["timestamp"], float)
        assert event["id"] and event["queue"]
    finally:
        receiver.stop()

    # The receiver is down: mail is still delivered at full speed, events are queued.
    started = time.monotonic()
    before = len(sink.messages)
    send(d, ["two@example.org"], count=20)
    wait_until(lambda: len(sink.messages) == before + 20, WAIT, "delivery with the hook down")
    assert time.monotonic() - started < 15
    queue_dir = d.workdir / "var/state/webhooks/crm"
    wait_until(lambda: sum(p.stat().st_size for p in queue_dir.glob("*.jsonl")) > 0, WAIT, "queued")
    assert d.stop() == 0

    # Restart with the receiver up again: the queued events are delivered.
    receiver = WebhookReceiver(SECRET.encode(), port)
    receiver.start()
    try:
        d.start()
        wait_until(lambda: len(receiver.events()) >= 20, WAIT, "the queued events")
        rcpts = [e["rcpt"] for e in receiver.events()]
        assert rcpts.count("two@example.org") == 20
        assert all(b.signed for b in receiver.batches)
    finally:
        receiver.stop()
        d.stop()

    # The event log: one JSON object per event, every kind (received too).
    lines = (d.workdir / "log/events.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in records)
    kinds = [r["type"] for r in records]
    assert kinds.count("delivered") == 21 and kinds.count("received") == 21


def test_the_secret_file_is_made_0600(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(extra=config(free_port()))
    d.start()
    secret = d.workdir / "hook-secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert len(secret.read_text().strip()) == 64
    body = b"[]"
    assert not verify(secret.read_text().strip().encode(), "1", body, "sha256=00")
    assert d.stop() == 0
