"""Every kind of listener, in the daemon as it ships: ``outrider run`` on its real event
loop (uvloop), with and without receiver processes, one message end to end each.

In-process listener tests run on asyncio's default loop, where some transport details
differ (implicit TLS once worked there and not under the daemon); these do not.
"""

from __future__ import annotations

import importlib.util
import smtplib
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from outrider.auth.store import UserStore
from tests.support.daemon import DaemonHandle, free_port
from tests.support.inbound import client_tls, raw_dialogue, tls_files
from tests.support.smtp_server import ScriptedSmtpServer

USER, PASSWORD = "alice", "correct horse"
SENDER = "alice@sender.test"
KINDS = ("mx", "submission-starttls", "submissions-implicit")


def _message(kind: str) -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {kind}@example.org\r\nSubject: via {kind}\r\n\r\nbody\r\n"
    ).encode()


def _send_mx(port: int, ctx: ssl.SSLContext) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as smtp:
        smtp.sendmail(SENDER, ["mx@example.org"], _message("mx"))


def _send_starttls(port: int, ctx: ssl.SSLContext) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as smtp:
        smtp.starttls(context=ctx)
        smtp.login(USER, PASSWORD)
        kind = "submission-starttls"
        smtp.sendmail(SENDER, [f"{kind}@example.org"], _message(kind))


def _send_implicit(port: int, ctx: ssl.SSLContext) -> None:
    with smtplib.SMTP_SSL(
        "127.0.0.1", port, local_hostname="client.test", context=ctx, timeout=10
    ) as smtp:
        smtp.login(USER, PASSWORD)
        kind = "submissions-implicit"
        smtp.sendmail(SENDER, [f"{kind}@example.org"], _message(kind))


SENDERS: dict[str, Callable[[int, ssl.SSLContext], None]] = {
    "mx": _send_mx,
    "submission-starttls": _send_starttls,
    "submissions-implicit": _send_implicit,
}


def _daemon(
    make_daemon: Callable[..., DaemonHandle], tmp_path: Path, ca: trustme.CA, receivers: int
) -> tuple[DaemonHandle, dict[str, int]]:
    """A daemon with a plain mx listener (the test config's own), a STARTTLS submission
    listener and an implicit-TLS submissions listener, both with AUTH."""
    cert, key = tls_files(ca, tmp_path / "tls")
    users = tmp_path / "users"
    UserStore(users).add(USER, PASSWORD, allowed_senders=[SENDER])
    ports = {"submission-starttls": free_port(), "submissions-implicit": free_port()}
    daemon = make_daemon(
        receiver_processes=receivers,
        extra=f'''
[[listener]]
address = "127.0.0.1:{ports["submission-starttls"]}"
role = "submission"
tls = "starttls"
tls-cert = "{cert}"
tls-key = "{key}"

[[listener]]
address = "127.0.0.1:{ports["submissions-implicit"]}"
role = "submissions"
tls = "implicit"
tls-cert = "{cert}"
tls-key = "{key}"

[auth]
users-file = "{users}"
''',
    )
    ports["mx"] = daemon.port
    return daemon, ports


@pytest.mark.parametrize("receivers", [0, 2])
def test_every_listener_kind_delivers_end_to_end(
    make_daemon: Callable[..., DaemonHandle],
    sink: ScriptedSmtpServer,
    tmp_path: Path,
    ca: trustme.CA,
    receivers: int,
) -> None:
    assert importlib.util.find_spec("uvloop") is not None, "the daemon ships with uvloop"
    daemon, ports = _daemon(make_daemon, tmp_path, ca, receivers)
    daemon.start()
    try:
        # The daemon and each receiver run on uvloop, the loop these tests are about.
        assert daemon.log_text().count("event loop: uvloop") == 1 + receivers
        ctx = client_tls(ca)
        outcome: dict[str, str] = {}
        for kind in KINDS:
            try:
                SENDERS[kind](ports[kind], ctx)
            except (OSError, smtplib.SMTPException) as exc:
                outcome[kind] = f"{type(exc).__name__}: {exc}"
            else:
                outcome[kind] = "sent"
        assert outcome == dict.fromkeys(KINDS, "sent")
        received = sink.wait_for_messages_sync(len(KINDS), timeout=15)
        by_rcpt = {rcpt: msg for msg in received for rcpt in msg.rcpts}
        assert sorted(by_rcpt) == sorted(f"{kind}@example.org" for kind in KINDS)
        for kind in KINDS:
            msg = by_rcpt[f"{kind}@example.org"]
            assert msg.mail_from == SENDER
            received_header = msg.data.split(b"\r\n\r\n")[0].replace(b"\r\n\t", b" ")
            protocol = b"ESMTP" if kind == "mx" else b"ESMTPSA"
            assert f"Subject: via {kind}".encode() in msg.data
            assert b" with " + protocol + b" id " in received_header, received_header
        # A client that does not speak TLS gets nothing on the implicit-TLS port; its
        # failed handshake costs the daemon no error.
        try:
            probe = raw_dialogue(ports["submissions-implicit"], b"EHLO client.test\r\n")
        except ConnectionResetError:
            probe = b""
        assert b"220" not in probe and b"250" not in probe
        _send_mx(ports["mx"], ctx)  # and the daemon keeps serving
        log = daemon.log_text()
        assert " ERROR " not in log and "Traceback" not in log, log[-3000:]
    finally:
        assert daemon.stop() == 0
