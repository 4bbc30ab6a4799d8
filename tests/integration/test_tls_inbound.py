"""Inbound TLS end to end: STARTTLS, implicit TLS, protocol floor, injection, aborts, reload.

In-process listeners with real sockets and certificates from a trustme CA; the
certificate reload test runs the real daemon and sends it SIGHUP.
"""

from __future__ import annotations

import asyncio
import signal
import smtplib
import socket
import ssl
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trustme

from outrider.inbound.limits import ConnectionGate
from outrider.inbound.session import InboundSession
from tests.support.daemon import DaemonHandle, free_port, wait_until
from tests.support.inbound import (
    InboundServer,
    client_tls,
    in_thread,
    raw_dialogue,
    read_all,
    start_server,
    tls_files,
    tls_server_context,
)

MESSAGE = b"From: a@sender.test\r\nTo: b@relay.test\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture
async def starttls_server(ca: trustme.CA, tmp_path: Path) -> AsyncIterator[InboundServer]:
    server = await start_server(tls=tls_server_context(ca, tmp_path), starttls=True)
    yield server
    await server.stop()


def _send_with_starttls(port: int, ctx: ssl.SSLContext) -> tuple[dict[str, str], dict[str, str]]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5) as smtp:
        smtp.ehlo()
        before = dict(smtp.esmtp_features)
        smtp.starttls(context=ctx)
        smtp.ehlo()
        after = dict(smtp.esmtp_features)
        smtp.sendmail("a@sender.test", ["b@relay.test"], MESSAGE)
    return before, after


async def test_starttls_upgrades_and_is_recorded_as_esmtps(
    starttls_server: InboundServer, ca: trustme.CA
) -> None:
    before, after = await in_thread(_send_with_starttls, starttls_server.port, client_tls(ca))
    assert "starttls" in before
    assert "starttls" not in after  # RFC 3207 4.2: not offered again over TLS
    [stored] = starttls_server.stored
    assert b" with ESMTPS id " in stored.data.split(b"\r\n\r\n")[0].replace(b"\r\n\t", b" ")


def _injection(port: int, ctx: ssl.SSLContext) -> tuple[bytes, bytes, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.recv(1024)
        raw.sendall(b"EHLO client.test\r\n")
        read_all(raw)
        # Plaintext pipelined behind STARTTLS: must be discarded, never run after TLS.
        raw.sendall(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@outside.test>\r\n")
        plain = read_all(raw)
        raw.settimeout(5)
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            after_handshake = read_all(tls, quiet=0.5)
            tls.sendall(b"MAIL FROM:<a@sender.test>\r\n")
            mail = read_all(tls)
    return plain, after_handshake, mail


async def test_plaintext_pipelined_after_starttls_is_discarded(
    starttls_server: InboundServer, ca: trustme.CA
) -> None:
    plain, after_handshake, mail = await in_thread(_injection, starttls_server.port, client_tls(ca))
    assert plain == b"220 2.0.0 Ready to start TLS\r\n"
    assert after_handshake == b""  # the RSET and MAIL were never answered
    assert mail.startswith(b"503 5.5.1")  # and EHLO is forgotten: a fresh session


def _second_starttls(port: int, ctx: ssl.SSLContext) -> tuple[int, int]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5) as smtp:
        smtp.ehlo()
        smtp.starttls(context=ctx)
        smtp.ehlo()
        again = smtp.docmd("STARTTLS")[0]
        smtp.mail("a@sender.test")
        during = smtp.docmd("STARTTLS")[0]
    return again, during


async def test_starttls_twice_or_in_a_transaction_is_refused(
    starttls_server: InboundServer, ca: trustme.CA
) -> None:
    assert await in_thread(_second_starttls, starttls_server.port, client_tls(ca)) == (503, 503)


async def test_no_starttls_without_a_certificate() -> None:
    server = await start_server()
    try:

        def dialogue() -> tuple[bool, int]:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                smtp.ehlo()
                return smtp.has_extn("starttls"), smtp.docmd("STARTTLS")[0]

        assert await in_thread(dialogue) == (False, 502)
    finally:
        await server.stop()


async def test_implicit_tls_listener(ca: trustme.CA, tmp_path: Path) -> None:
    server = await start_server(tls=tls_server_context(ca, tmp_path), implicit_tls=True)
    try:

        def dialogue() -> tuple[bool, str]:
            ctx = client_tls(ca)
            with smtplib.SMTP_SSL("127.0.0.1", server.port, context=ctx, timeout=5) as smtp:
                smtp.ehlo("client.test")
                offered = smtp.has_extn("starttls")
                smtp.sendmail("a@sender.test", ["b@relay.test"], MESSAGE)
                version = smtp.sock.version()  # type: ignore[union-attr]
            return offered, str(version)

        offered, version = await in_thread(dialogue)
        assert not offered
        assert version in ("TLSv1.2", "TLSv1.3")
        [stored] = server.stored
        assert b"with ESMTPS" in stored.data
    finally:
        await server.stop()


async def test_implicit_tls_plaintext_client_gets_nothing(ca: trustme.CA, tmp_path: Path) -> None:
    server = await start_server(tls=tls_server_context(ca, tmp_path), implicit_tls=True)
    try:

        def dialogue() -> bytes:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r\n")
                return read_all(sock, quiet=1.0)

        reply = await in_thread(dialogue)
        assert b"250" not in reply and b"220" not in reply
        assert server.stored == []
    finally:
        await server.stop()


async def test_implicit_tls_refusal_is_sent_inside_tls(ca: trustme.CA, tmp_path: Path) -> None:
    """The socket does the handshake before the session: a client over the connection
    limit is told why in TLS, not in plaintext it could not read."""
    gate = ConnectionGate(max_connections=1, max_per_client=0, rate_per_client=None)
    server = await start_server(tls=tls_server_context(ca, tmp_path), implicit_tls=True, gate=gate)
    try:

        def dialogue() -> tuple[int, int]:
            ctx = client_tls(ca)
            with smtplib.SMTP_SSL("127.0.0.1", server.port, context=ctx, timeout=5) as first:
                with pytest.raises(smtplib.SMTPConnectError) as refused:
                    smtplib.SMTP_SSL("127.0.0.1", server.port, context=ctx, timeout=5)
                return first.noop()[0], refused.value.smtp_code

        assert await in_thread(dialogue) == (250, 421)
    finally:
        await server.stop()


async def test_an_implicit_tls_session_never_speaks_in_clear(
    ca: trustme.CA, tmp_path: Path
) -> None:
    """The core of an implicit-TLS session takes the connection for secure (AUTH is
    offered): served without TLS by mistake, it closes without a word."""
    server = await start_server(tls=tls_server_context(ca, tmp_path), implicit_tls=True)
    loop = asyncio.get_running_loop()
    plain = await loop.create_server(lambda: InboundSession(server.ctx), "127.0.0.1", 0)
    try:
        port = plain.sockets[0].getsockname()[1]
        assert await in_thread(raw_dialogue, port) == b""  # closed, no greeting
        assert not server.ctx.sessions
    finally:
        plain.close()
        await server.stop()


def _handshake(port: int, ctx: ssl.SSLContext) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.ehlo()
        smtp.starttls(context=ctx)
        return str(smtp.sock.version())  # type: ignore[union-attr]


def _legacy_handshake(port: int, ca: trustme.CA) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
        old = client_tls(
            ca, minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1
        )
        old.set_ciphers("ALL:@SECLEVEL=0")
        return _handshake(port, old)


async def test_tls_1_1_is_refused(starttls_server: InboundServer, ca: trustme.CA) -> None:
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        await in_thread(_legacy_handshake, starttls_server.port, ca)
    modern = client_tls(ca, maximum_version=ssl.TLSVersion.TLSv1_2)
    assert await in_thread(_handshake, starttls_server.port, modern) == "TLSv1.2"


async def test_tls_min_version_1_3(ca: trustme.CA, tmp_path: Path) -> None:
    ctx = tls_server_context(ca, tmp_path, min_version="TLSv1.3")
    server = await start_server(tls=ctx, starttls=True)
    try:
        tls12 = client_tls(ca, maximum_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
            await in_thread(_handshake, server.port, tls12)
        assert await in_thread(_handshake, server.port, client_tls(ca)) == "TLSv1.3"
    finally:
        await server.stop()


def _abort_mid_body(port: int, ctx: ssl.SSLContext, command: bytes, how: str) -> bytes:
    smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5)
    smtp.ehlo()
    smtp.starttls(context=ctx)
    smtp.ehlo()
    smtp.mail("a@sender.test")
    smtp.rcpt("b@relay.test")
    tls = smtp.sock
    assert isinstance(tls, ssl.SSLSocket)
    tls.sendall(command + b"Subject: partial\r\n\r\nhalf a body\r\n")
    reply = read_all(tls, quiet=0.3)
    if how == "close_notify":
        raw = tls.unwrap()  # a clean TLS close in the middle of the message
        raw.close()
    else:
        tls.sendall(b"more\r\n")
        raw_fd = socket.socket(fileno=tls.detach())  # garbage on the wire: a TLS error
        raw_fd.sendall(b"\x17\x03\x03\x00\x05hello")
        raw_fd.close()
    return reply


@pytest.mark.parametrize("command", [b"DATA\r\n", b"BDAT 1000 LAST\r\n"])
@pytest.mark.parametrize("how", ["close_notify", "tls_error"])
async def test_tls_close_mid_message_queues_nothing(
    starttls_server: InboundServer, ca: trustme.CA, command: bytes, how: str
) -> None:
    reply = await in_thread(_abort_mid_body, starttls_server.port, client_tls(ca), command, how)
    if command.startswith(b"DATA"):
        assert reply.startswith(b"354")
    await in_thread(wait_until, lambda: not starttls_server.ctx.sessions, 5.0, "session closed")
    assert starttls_server.stored == []


def _server_certificate(port: int, ctx: ssl.SSLContext, tls: str = "starttls") -> bytes:
    """The certificate the listener presents, over STARTTLS or implicit TLS."""
    smtp: smtplib.SMTP
    if tls == "implicit":
        smtp = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=5)
    else:
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=5)
    with smtp:
        smtp.ehlo()
        if tls != "implicit":
            smtp.starttls(context=ctx)
        sock = smtp.sock
        assert isinstance(sock, ssl.SSLSocket)
        cert = sock.getpeercert(binary_form=True)
    assert cert is not None
    return bytes(cert)


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_sighup_reloads_the_certificate(
    make_daemon: Callable[..., DaemonHandle], tmp_path: Path, tls: str
) -> None:
    first_ca, second_ca = trustme.CA(), trustme.CA()
    cert, key = tls_files(first_ca, tmp_path / "tls")
    daemon = make_daemon(
        extra=f'''
[[listener]]
address = "127.0.0.1:{{port}}"
tls = "{tls}"
tls-cert = "{cert}"
tls-key = "{key}"
'''
    )
    tls_port = _free_port()
    daemon.config_path.write_text(daemon.config_path.read_text().replace("{port}", str(tls_port)))
    daemon.start()
    try:
        first = _server_certificate(tls_port, client_tls(first_ca), tls)
        tls_files(second_ca, tmp_path / "tls")  # renewed in place, as certbot does
        daemon.edit_config(f'tls = "{tls}"\n', f'tls = "{tls}"\ntls-min-version = "TLSv1.3"\n')
        offset = daemon.log_path.stat().st_size
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: "configuration reloaded" in daemon.log_text_since(offset), 10, "reload")
        second = _server_certificate(tls_port, client_tls(second_ca), tls)
        assert second != first
        with pytest.raises(ssl.SSLCertVerificationError):
            _server_certificate(tls_port, client_tls(first_ca), tls)
        tls12 = client_tls(second_ca, maximum_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
            _server_certificate(tls_port, tls12, tls)  # the new tls-min-version applies
    finally:
        assert daemon.stop() == 0


def test_sighup_cannot_switch_implicit_tls(
    make_daemon: Callable[..., DaemonHandle], tmp_path: Path, ca: trustme.CA
) -> None:
    """The socket of an implicit-TLS listener does the TLS: a reload that would switch it
    to STARTTLS is refused for that listener (logged), which keeps serving implicit TLS."""
    cert, key = tls_files(ca, tmp_path / "tls")
    tls_port = _free_port()
    daemon = make_daemon(
        extra=f'''
[[listener]]
address = "127.0.0.1:{tls_port}"
tls = "implicit"
tls-cert = "{cert}"
tls-key = "{key}"
'''
    )
    daemon.start()
    try:
        daemon.edit_config('tls = "implicit"', 'tls = "starttls"')
        offset = daemon.log_path.stat().st_size
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: "configuration reloaded" in daemon.log_text_since(offset), 10, "reload")
        assert "switching implicit TLS on or off needs a restart" in daemon.log_text_since(offset)
        assert _server_certificate(tls_port, client_tls(ca), "implicit")
    finally:
        assert daemon.stop() == 0


def _free_port() -> int:
    return free_port()
