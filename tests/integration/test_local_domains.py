"""Mail for local domains through the real daemon, as shipped (a receiver process): unknown
addresses refused at RCPT, mailboxes in Maildir, aliases, forwarding, a list, and a
domain whose mailboxes are behind LMTP."""

from __future__ import annotations

import asyncio
import mailbox
import smtplib
from collections.abc import Callable
from pathlib import Path

from tests.support.daemon import DaemonHandle, control, wait_until
from tests.support.lmtp_server import LmtpScript, LmtpServer
from tests.support.smtp_server import ScriptedSmtpServer

WAIT = 30.0


def maildir_count(root: Path, user: str) -> int:
    path = root / "corp.test" / user / "Maildir"
    # cur/ is made last (delivery/maildir.py): before it exists the box is being created
    return len(mailbox.Maildir(str(path), create=False)) if (path / "cur").exists() else 0


async def test_local_domains_end_to_end(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, tmp_path: Path
) -> None:
    mail = tmp_path / "mail"
    script = LmtpScript(rcpt_replies={"nobody@dove.test": "550 5.1.1 <nobody@dove.test> unknown"})
    async with LmtpServer(script) as lmtp:
        extra = f"""
[local-domain."corp.test"]
maildir = "{mail}/{{domain}}/{{user}}/Maildir"
mailboxes = ["alice", "bob"]
[local-domain."corp.test".aliases]
sales = ["alice", "bob"]
fwd = "far@example.org"
loop = "loop"
[local-domain."dove.test"]
transport = "lmtp:127.0.0.1:{lmtp.target.port}"
[list."team@corp.test"]
members = ["alice@corp.test", "out@example.org"]
allowed-senders = "anyone"
"""
        daemon = make_daemon(extra=extra, receiver_processes=1)
        await asyncio.to_thread(daemon.start)
        route = await asyncio.to_thread(
            control, daemon, {"cmd": "route", "address": "sales@corp.test"}
        )
        local = route["route"]["local"]  # type: ignore[index]
        assert (local["kind"], local["mailboxes"], local["transport"]) == (
            "alias",
            ["alice@corp.test", "bob@corp.test"],
            "maildir",
        )
        unknown = await asyncio.to_thread(
            control, daemon, {"cmd": "route", "address": "nobody@corp.test"}
        )
        assert "550 5.1.1" in unknown["route"]["local"]["refused"]  # type: ignore[index]

        def session() -> None:
            with smtplib.SMTP(daemon.host, daemon.port, timeout=10) as client:
                client.ehlo("client.test")
                assert client.mail("s@sender.test")[0] == 250
                assert client.rcpt("nobody@corp.test")[:1] == (550,)
                assert client.rcpt("loop@corp.test")[:1] == (550,)
                for rcpt in (
                    "alice+news@corp.test",
                    "sales@corp.test",
                    "fwd@corp.test",
                    "team@corp.test",
                    "x@dove.test",
                    "nobody@dove.test",  # the LMTP server decides: accepted here
                ):
                    assert client.rcpt(rcpt)[0] == 250, rcpt
                code, text = client.data(b"Subject: local\r\n\r\nhello\r\n")
                assert code == 250, text

        await asyncio.to_thread(session)
        await lmtp.wait_for_messages(1, timeout=WAIT)
        # alice: alice+news, alice (via sales) and the list's copy; bob: via sales
        await asyncio.to_thread(
            wait_until, lambda: maildir_count(mail, "alice") == 3, WAIT, "alice's mail"
        )
        assert maildir_count(mail, "bob") == 1
        await asyncio.to_thread(
            wait_until, lambda: len(sink.messages) >= 2, WAIT, "forwarded and list mail"
        )
        by_rcpt = {tuple(m.rcpts): m for m in sink.messages}
        assert by_rcpt[("far@example.org",)].mail_from == "s@sender.test"
        list_copy = by_rcpt[("out@example.org",)]
        assert list_copy.mail_from == "team-bounces@corp.test"
        assert b"List-Id: <team.corp.test>" in list_copy.data
        [delivered] = lmtp.messages
        assert delivered.recipients == ["x@dove.test"] and delivered.delivered == ["x@dove.test"]
        box = mailbox.Maildir(str(mail / "corp.test" / "alice" / "Maildir"), create=False)
        delivered_to = sorted(str(m["Delivered-To"]) for m in box)
        assert delivered_to == ["alice+news@corp.test", "alice@corp.test", "alice@corp.test"]
        await asyncio.to_thread(
            wait_until,
            lambda: "bounced to=<nobody@dove.test>" in daemon.log_text(),
            WAIT,
            "the LMTP server's refusal",
        )


def test_queue_only_holds_mail_until_a_queue_run_or_a_retry(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    daemon = make_daemon(receiver_processes=1)
    text = daemon.config_path.read_text()
    daemon.config_path.write_text(
        text.replace("[server]\n", '[server]\nqueue-only = true\nqueue-run-interval = "1h"\n', 1)
    )
    daemon.start()
    status = control(daemon, {"cmd": "overview"})["status"]
    assert status["delivery"] == {"mode": "queue-only", "reason": "queue-only is set"}  # type: ignore[index]
    with smtplib.SMTP(daemon.host, daemon.port, timeout=10) as client:
        client.sendmail("s@sender.test", ["held@example.org"], b"Subject: later\r\n\r\nhi\r\n")
    wait_until(
        lambda: control(daemon, {"cmd": "list", "rcpt": "held@example.org"}).get("recipients"),
        WAIT,
        "the message queued",
    )
    assert sink.messages == []  # held for the next queue run, an hour away
    assert control(daemon, {"cmd": "retry", "all": True})["ok"] is True
    wait_until(lambda: len(sink.messages) == 1, WAIT, "delivery after retry")


def test_kill_9_during_maildir_delivery_loses_nothing(
    make_daemon: Callable[..., DaemonHandle], tmp_path: Path
) -> None:
    """Every acknowledged message ends up in the mailbox, whole, after a kill -9 in the
    middle of deliveries; a copy may be delivered twice only if it was in flight."""
    mail = tmp_path / "crashmail"
    extra = f"""
[local-domain."corp.test"]
maildir = "{mail}/{{domain}}/{{user}}/Maildir"
mailboxes = ["alice"]
"""
    daemon = make_daemon(extra=extra, receiver_processes=1)
    daemon.start()
    acked: list[str] = []
    with smtplib.SMTP(daemon.host, daemon.port, timeout=10) as client:
        for n in range(60):
            mid = f"<crash-{n}@sender.test>"
            lines = ("x" * 70 + "\r\n") * 30
            body = f"Message-ID: {mid}\r\nSubject: crash {n}\r\n\r\n{lines}end\r\n"
            client.sendmail("s@sender.test", ["alice@corp.test"], body.encode())
            acked.append(mid)
    daemon.kill()  # deliveries are under way or queued: some done, some not
    daemon.start()
    path = mail / "corp.test" / "alice" / "Maildir"

    def ids() -> list[str]:
        box = mailbox.Maildir(str(path), create=False)
        return [str(m["Message-ID"]) for m in box]

    wait_until(lambda: set(acked) <= set(ids()), WAIT, "every acknowledged message")
    found = ids()
    assert len(found) - len(set(found)) <= 20  # at most the deliveries in flight (max-smtp-out)
    box = mailbox.Maildir(str(path), create=False)
    assert all(m.get_payload().endswith("end\n") for m in box)  # no partial file in new/


def test_forwarding_with_srs_and_bounces_back(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, tmp_path: Path
) -> None:
    extra = f"""
[local-domain."corp.test"]
maildir = "{tmp_path}/srsmail/{{domain}}/{{user}}/Maildir"
mailboxes = ["alice"]
[local-domain."corp.test".aliases]
fwd = ["far@example.org", "alice"]
[srs]
enabled = true
domain = "srs.corp.test"
"""
    daemon = make_daemon(extra=extra, receiver_processes=1)
    daemon.start()
    assert (daemon.workdir / "var" / "srs-secret").stat().st_mode & 0o777 == 0o600
    with smtplib.SMTP(daemon.host, daemon.port, timeout=10) as client:
        client.sendmail(
            "bob@sender.test", ["fwd@corp.test", "direct@example.org"], b"Subject: f\r\n\r\nhi\r\n"
        )
    wait_until(lambda: len(sink.messages) >= 2, WAIT, "the forward and the direct copy")
    senders = {m.rcpts: m.mail_from for m in sink.messages}
    assert senders[("direct@example.org",)] == "bob@sender.test"  # not forwarded: unchanged
    rewritten = senders[("far@example.org",)]
    assert rewritten.startswith("SRS0=") and rewritten.endswith("=sender.test=bob@srs.corp.test")
    # The next hop bounces the forward: the bounce to the SRS address reaches bob.
    with smtplib.SMTP(daemon.host, daemon.port, timeout=10) as stranger:
        stranger.ehlo("remote.example")
        assert stranger.mail("")[0] == 250
        assert stranger.rcpt(rewritten.replace("bob", "eve"))[0] == 550  # forged
        assert stranger.rcpt(rewritten)[0] == 250
        assert stranger.data(b"Subject: bounce\r\n\r\nundeliverable\r\n")[0] == 250
    wait_until(
        lambda: any(m.rcpts == ("bob@sender.test",) for m in sink.messages),
        WAIT,
        "the bounce sent on to the original sender",
    )
