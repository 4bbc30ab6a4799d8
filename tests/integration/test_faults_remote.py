"""Remote-server faults, end to end: the real daemon (uvloop, a receiver process) against
loopback servers that reset the connection in the middle of DATA, never greet, never
answer RCPT or the end of data, read the message one byte per second, or fail the TLS
handshake (required: deferred; opportunistic: sent in clear).

What must hold: each attempt ends by the timeout of its own phase (the reply text names
it), the message is retried at ``retry-after`` and delivered once the server is fixed,
and the accounting log has one ``t`` row per failed attempt and exactly one ``d``.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import trustme

from tests.support.daemon import DaemonHandle, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript
from tests.support.stalling_smtp import StallingSmtpServer
from tests.support.tls import server_context

SENDER = "a@sender.test"
FAILED_ATTEMPTS = 2  # let this many attempts fail before the server is fixed
PHASE_KEYS = (
    "smtp-greeting-timeout",
    "smtp-command-timeout",
    "smtp-data-init-timeout",
    "smtp-data-block-timeout",
    "smtp-data-termination-timeout",
)


def domain_table(domain: str, port: int, fast: str | None, extra: str = "") -> str:
    """Route ``domain`` to the loopback server; ``fast`` is the one phase timeout that
    is short (1s), every other phase waits 20s, so only the right key can end an
    attempt within a few seconds."""
    lines = [f'[domain."{domain}"]', f'route = "127.0.0.1:{port}"']
    lines += [f'{key} = "{"1s" if key == fast else "20s"}"' for key in PHASE_KEYS]
    return "\n".join(lines) + "\n" + extra


def message(uid: str, rcpt: str, body: bytes = b"hello\r\n") -> bytes:
    head = f"From: {SENDER}\r\nTo: {rcpt}\r\nSubject: {uid}\r\nMessage-ID: <{uid}@client.test>\r\n"
    return head.encode() + b"\r\n" + body


def send(d: DaemonHandle, rcpt: str, content: bytes) -> float:
    with smtplib.SMTP(d.host, d.port, timeout=20) as client:
        assert client.sendmail(SENDER, [rcpt], content) == {}
    return time.monotonic()


def rows_for(d: DaemonHandle, rcpt: str) -> list[dict[str, str]]:
    return [r for r in d.accounting_rows() if r["rcpt"] == rcpt]


def when_rows(d: DaemonHandle, rcpt: str, count: int, timeout: float) -> float:
    """Wait for ``count`` accounting rows of ``rcpt``; returns when they were seen."""
    wait_until(lambda: len(rows_for(d, rcpt)) >= count, timeout=timeout, what=f"{count} rows")
    return time.monotonic()


@dataclass
class Fault:
    """One scripted remote fault: the server, how to repair it, what it does to us."""

    name: str
    start: Callable[[], object]
    repair: Callable[[], None]
    failed: Callable[[], int]  # failed attempts as the server saw them
    delivered: Callable[[], int]
    fast: str | None  # the phase timeout that should end each attempt
    diag: str  # in the dsnDiag of every deferral
    status: str
    extra: str = ""
    body: bytes = b"hello\r\n"


@pytest.fixture
def tls_contexts(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A working server context, and one that aborts every handshake with a
    ``handshake_failure`` alert as soon as the ClientHello arrives."""
    good = server_context(ca, "127.0.0.1")
    bad = server_context(ca, "127.0.0.1")
    bad.sni_callback = lambda *_: ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
    return good, bad


# Faults a ScriptedSmtpServer can play: script, the phase timeout that must end each
# attempt (None: the server ends it), the reason and status of the deferral.
SCRIPTED: dict[str, tuple[ServerScript, str | None, str, str]] = {
    "reset-mid-data": (
        ServerScript(drop_at="body", omit_extensions=frozenset({"CHUNKING"})),
        None,
        "Connection lost",
        "4.4.2",
    ),
    "no-greeting": (
        ServerScript(hang_at="greeting"),
        "smtp-greeting-timeout",
        "Timeout waiting for greeting reply",
        "4.4.1",
    ),
    "no-rcpt-reply": (
        ServerScript(hang_at="rcpt"),
        "smtp-command-timeout",
        "Timeout waiting for RCPT TO reply",
        "4.4.2",
    ),
    "no-end-of-data-reply": (
        ServerScript(hang_at="data_done"),
        "smtp-data-termination-timeout",
        "Timeout waiting for end of data reply",
        "4.4.2",
    ),
}


def scripted_fault(kind: str) -> tuple[Fault, ScriptedSmtpServer]:
    script, fast, diag, status = SCRIPTED[kind]
    server = ScriptedSmtpServer(script)

    def repair() -> None:
        server.script = ServerScript(omit_extensions=script.omit_extensions)

    fault = Fault(
        kind,
        server.start_in_thread,
        repair,
        lambda: server.connections - len(server.messages),
        lambda: len(server.messages),
        fast,
        diag,
        status,
        body=b"y" * 70 + b"\r\n" * 200,
    )
    return fault, server


FaultServer = ScriptedSmtpServer | StallingSmtpServer


def make_fault(kind: str, ctxs: tuple[ssl.SSLContext, ssl.SSLContext]) -> tuple[Fault, FaultServer]:
    if kind in SCRIPTED:
        return scripted_fault(kind)
    if kind == "slow-reader":
        slow = StallingSmtpServer("slow-data")

        def sink() -> None:
            slow.mode = "sink"

        fault = Fault(
            kind,
            slow.start,
            sink,
            lambda: slow.stalled,
            lambda: len(slow.messages),
            "smtp-data-block-timeout",
            "Timeout sending message data",
            "4.4.2",
            # more than the socket buffers hold (loopback: up to 4 MiB send buffer), so
            # that writes stall; a smaller message is handed to the kernel whole and
            # waits for the end-of-data reply (smtp-data-termination-timeout) instead
            body=(b"z" * 78 + b"\r\n") * 80_000,
        )
        return fault, slow
    assert kind == "tls-required", kind
    good, bad = ctxs
    server = ScriptedSmtpServer(tls_context=bad)

    def working_tls() -> None:
        server.tls_context = good

    fault = Fault(
        kind,
        server.start_in_thread,
        working_tls,
        lambda: server.tls_failures,
        lambda: len(server.messages),
        None,
        "TLS handshake failed",
        "4.7.5",
        extra="require-starttls = true\n",
    )
    return fault, server


def stop(server: FaultServer) -> None:
    if isinstance(server, ScriptedSmtpServer):
        server.stop_thread()
    else:
        server.stop()


@pytest.fixture
def fault_server(
    request: pytest.FixtureRequest, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> Iterator[tuple[Fault, FaultServer]]:
    fault, server = make_fault(request.param, tls_contexts)
    fault.start()
    yield fault, server
    stop(server)


@pytest.mark.parametrize(
    "fault_server",
    [*SCRIPTED, "slow-reader", "tls-required"],
    indirect=True,
)
def test_remote_fault_is_retried_and_accounted_once_per_attempt(
    make_daemon: Callable[..., DaemonHandle], fault_server: tuple[Fault, FaultServer]
) -> None:
    fault, server = fault_server
    port = server.port
    domain = f"{fault.name}.test"
    rcpt = f"x@{domain}"
    d = make_daemon(
        receiver_processes=1, domain_defaults=domain_table(domain, port, fault.fast, fault.extra)
    )
    d.edit_config('max-message-size = "1M"', 'max-message-size = "16M"')
    d.start()
    sent = send(d, rcpt, message(fault.name, rcpt, fault.body))
    first = when_rows(d, rcpt, 1, timeout=30) - sent
    when_rows(d, rcpt, FAILED_ATTEMPTS, timeout=30)
    assert fault.delivered() == 0
    fault.repair()
    wait_until(lambda: fault.delivered() == 1, timeout=30, what="delivered after the repair")
    wait_until(lambda: [r["type"] for r in rows_for(d, rcpt)][-1:] == ["d"], what="d row")
    wait_until(lambda: d.spool_files() == [], what="spool empty")
    assert d.stop() == 0

    rows = rows_for(d, rcpt)
    deferrals = [r for r in rows if r["type"] == "t"]
    assert [r["type"] for r in rows] == ["t"] * len(deferrals) + ["d"], rows
    assert len(deferrals) == fault.failed() >= FAILED_ATTEMPTS, (fault.failed(), rows)
    for row in deferrals:
        assert row["dsnStatus"] == fault.status and fault.diag in row["dsnDiag"], row
        assert not row["dsnDiag"].endswith(": "), "the reason says what went wrong"
    assert fault.delivered() == 1
    if fault.fast is not None:
        # ended by its phase timeout (1s), not by any other (20s); rows are flushed
        # each second, and the machine may be busy
        assert 1.0 <= first < 10.0, first
    if isinstance(server, StallingSmtpServer):
        assert server.slow_bytes < 60 * fault.failed(), "the reader took one byte a second"
    print(
        f"FIGURES remote {fault.name}: first deferral {first:.2f}s after the 250 "
        f"({deferrals[0]['dsnDiag']}); {len(deferrals)} deferrals for "
        f"{fault.failed()} failed attempts; 1 delivery"
    )


def test_opportunistic_tls_handshake_failure_falls_back_to_clear_text(
    make_daemon: Callable[..., DaemonHandle],
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    _, bad = tls_contexts
    server = ScriptedSmtpServer(tls_context=bad)
    with server.run_in_thread():
        d = make_daemon(
            receiver_processes=1, domain_defaults=domain_table("tls-may.test", server.port, None)
        )
        d.start()
        send(d, "x@tls-may.test", message("tls-may", "x@tls-may.test"))
        [got] = server.wait_for_messages_sync(1, timeout=15)
        wait_until(lambda: len(rows_for(d, "x@tls-may.test")) == 1, what="accounted")
        assert d.stop() == 0
    assert not got.tls and server.tls_failures == 1
    [row] = rows_for(d, "x@tls-may.test")
    assert row["type"] == "d", row
    assert "retrying with none TLS" in d.log_text()


@pytest.mark.parametrize("stall", ["starttls-reply", "tls-handshake"])
def test_stalled_starttls_ends_by_the_command_timeout(
    make_daemon: Callable[..., DaemonHandle],
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    stall: str,
) -> None:
    good, _ = tls_contexts
    server: FaultServer
    if stall == "starttls-reply":
        server = ScriptedSmtpServer(ServerScript(hang_at="starttls"), tls_context=good)
        server.start_in_thread()
    else:
        server = StallingSmtpServer("silent-tls").start()
    try:
        table = domain_table(
            "stls.test", server.port, "smtp-command-timeout", "require-starttls = true\n"
        )
        d = make_daemon(receiver_processes=1, domain_defaults=table)
        d.start()
        sent = send(d, "x@stls.test", message("stls", "x@stls.test"))
        # 1s for the stalled phase, up to 1s until the row is flushed, and slack for a
        # busy machine; waiting longer would only show the 60s default
        seen = when_rows(d, "x@stls.test", 1, timeout=15)
        [row] = rows_for(d, "x@stls.test")[:1]
        assert row["type"] == "t" and row["dsnStatus"].startswith("4."), row
        assert seen - sent < 10.0, seen - sent
    finally:
        stop(server)
