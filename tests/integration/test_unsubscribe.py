"""One-click unsubscribe against the real daemon (one receiver process, so the API's
intake in the delivery process and the SMTP intake in the receiver both add the fields):
HTTP injection with ``"unsubscribe": true`` and a trusted SMTP client's
``X-Outrider-Unsubscribe``, DKIM over the fields checked by dkimpy, the GET page that
never unsubscribes, forged tokens, the RFC 8058 POST (urllib, then aiohttp's multipart),
``outrider suppression list``, the event log, and the next message to the address
bounced as suppressed."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import smtplib
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from outrider.dkim.keys import load_private_key
from tests.support.daemon import DaemonHandle, free_port, wait_until
from tests.support.dkim_keys import Dns, signature_tags, verify_all, write_keys
from tests.support.smtp_server import ScriptedSmtpServer

PUBLIC = "https://news.sender.test/unsubscribe"


def http(
    port: int, method: str, path: str, data: bytes | None = None, ctype: str = ""
) -> tuple[int, str, dict[str, str]]:
    headers = {"Content-Type": ctype} if ctype else {}
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def inject(port: int, body: dict[str, Any]) -> tuple[int, Any]:
    status, text, _ = http(
        port, "POST", "/api/v1/messages", json.dumps(body).encode(), "application/json"
    )
    return status, json.loads(text)


def campaign(rcpt: str, **extra: Any) -> dict[str, Any]:
    return {
        "envelope_sender": "bounces@sender.test",
        "recipients": [{"email": rcpt}],
        "content": {"from": "news@sender.test", "subject": "Offer", "text_body": "Hello"},
        "job_id": "spring",
        **extra,
    }


def tokens_of(data: bytes) -> tuple[str, str]:
    """(the https URL's path on the listener, the mailto subject's token)."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = (u.strip().strip("<>") for u in str(msg["List-Unsubscribe"]).split(","))
    assert https.startswith(PUBLIC + "/")
    token = https.rpartition("/")[2]
    assert mailto == f"mailto:unsubscribe@bounce.sender.test?subject=unsubscribe:{token}"
    return "/unsubscribe/" + token, token


def test_one_click_unsubscribe_end_to_end(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, tmp_path: Path
) -> None:
    keys = write_keys(tmp_path)
    dns = Dns()
    dns.publish("sender.test", "r1", load_private_key(keys["rsa-sha256"], "rsa-sha256"))
    port = free_port()
    d = make_daemon(
        receiver_processes=1,
        extra=(
            f'[http]\naddress = "127.0.0.1:{port}"\n'
            f'[unsubscribe]\nurl = "{PUBLIC}/"\nmailto = "unsubscribe@bounce.sender.test"\n'
            'page-text = "Sender Test News"\n'
            '[bounce-domain."bounce.sender.test"]\n'
            '[event-log]\nfile = "log/events.jsonl"\n'
            '[[dkim]]\ndomain = "sender.test"\nselector = "r1"\n'
            f'key-file = "{keys["rsa-sha256"]}"\n'
        ),
    )
    d.start()

    # HTTP injection, asked for: both fields, signed
    status, body = inject(port, campaign("Ann@example.org", unsubscribe=True))
    assert status == 200 and body["success_count"] == 1, body
    [msg] = sink.wait_for_messages_sync(1, timeout=30)
    assert verify_all(msg.data, dns) == [(b"rsa-sha256", True)]
    [tags] = signature_tags(msg.data)
    signed = [h.strip().lower() for h in tags[b"h"].decode().split(":")]
    assert signed.count("list-unsubscribe") == 2 and signed.count("list-unsubscribe-post") == 2
    path, _ = tokens_of(msg.data)

    # not asked, sender domain not listed: no fields; a trusted SMTP client asks by header
    assert inject(port, campaign("plain@example.org"))[0] == 200
    with smtplib.SMTP(d.host, d.port, timeout=30) as client:
        client.sendmail(
            "bounces@sender.test",
            ["smtp@example.org"],
            b"From: news@sender.test\r\nX-Outrider-Unsubscribe: yes\r\nSubject: s\r\n\r\nhi\r\n",
        )
    wait_until(lambda: len(sink.messages) == 3, timeout=30, what="3 deliveries")
    by_rcpt = {m.rcpts[0]: m.data for m in sink.messages}
    assert b"List-Unsubscribe" not in by_rcpt["plain@example.org"]
    assert b"X-Outrider-Unsubscribe" not in by_rcpt["smtp@example.org"]
    smtp_path, _ = tokens_of(by_rcpt["smtp@example.org"])

    # GET shows the page and does not unsubscribe (link scanners)
    status, page, headers = http(port, "GET", path)
    assert status == 200 and "Ann@example.org" in page and 'method="post"' in page
    assert "Sender Test News" in page and headers["Referrer-Policy"] == "no-referrer"
    listed = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "outrider", "suppression", "list", "-c", str(d.config_path)],
        cwd=d.workdir, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    assert "ann@example.org" not in listed()

    # forged and malformed tokens: 400, no detail; a POST without the one-click body: 400
    forged = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    one_click = b"List-Unsubscribe=One-Click"
    form = "application/x-www-form-urlencoded"
    for bad in (forged, "/unsubscribe/nonsense", "/unsubscribe/a.b"):
        status, page, _ = http(port, "POST", bad, one_click, form)
        assert status == 400 and "not valid" in page and "signature" not in page
        assert http(port, "GET", bad)[0] == 400
    assert http(port, "POST", path, b"", form)[0] == 400
    assert "ann@example.org" not in listed()

    # RFC 8058 POST: suppressed for sender.test, idempotent
    status, page, _ = http(port, "POST", path, one_click, form)
    assert status == 200 and "will get no more mail from sender.test" in page
    assert http(port, "POST", path, one_click, form)[0] == 200
    assert "ann@example.org" in listed() and "unsubscribe" in listed()

    async def multipart() -> int:
        data = aiohttp.FormData({"List-Unsubscribe": "One-Click"})
        data._is_multipart = True  # force multipart/form-data
        url = f"http://127.0.0.1:{port}{smtp_path}"
        async with aiohttp.ClientSession() as session, session.post(url, data=data) as resp:
            return resp.status

    assert asyncio.run(multipart()) == 200
    wait_until(lambda: "smtp@example.org" in listed(), what="smtp@ suppressed")

    # the event log has the Feedback events
    events = d.workdir / "log" / "events.jsonl"

    def unsubscribed() -> list[dict[str, Any]]:
        if not events.exists():
            return []
        lines = [json.loads(line) for line in events.read_text().splitlines() if line]
        return [e for e in lines if e.get("type") == "unsubscribed"]

    wait_until(lambda: len(unsubscribed()) >= 3, timeout=10, what="unsubscribed events")
    first = unsubscribed()[0]
    assert "Ann@example.org" in json.dumps(first) and "spring" in json.dumps(first)

    # the next message to the address is not attempted: a b row, bounceCat suppressed
    assert inject(port, campaign("ann@example.org"))[0] == 200

    def suppressed_row() -> list[dict[str, str]]:
        return [
            r for r in d.accounting_rows() if r["rcpt"] == "ann@example.org" and r["type"] == "b"
        ]

    wait_until(suppressed_row, timeout=20, what="b row")
    assert suppressed_row()[0]["bounceCat"] == "suppressed"
    assert len([m for m in sink.messages if m.rcpts[0].lower() == "ann@example.org"]) == 1
    assert d.stop() == 0


def test_off_without_url_or_mailto(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    port = free_port()
    d = make_daemon(extra=f'[http]\naddress = "127.0.0.1:{port}"\n')
    d.start()
    status, body = inject(port, campaign("a@example.org", unsubscribe=True))
    assert status == 400 and body["errors"][0]["field"] == "unsubscribe"
    assert http(port, "GET", "/unsubscribe/x.y")[0] == 404
    assert http(port, "POST", "/unsubscribe/x.y", b"List-Unsubscribe=One-Click")[0] == 404
    assert d.stop() == 0
