"""Required / verified STARTTLS against the scripted SMTP server on loopback."""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from outrider.delivery.mta_sts import StsPolicy
from outrider.delivery.smtp_client import SmtpConnectError, SmtpSession, SmtpTimeouts
from outrider.delivery.tls_policy import TlsRequirement, TlsVerify, tls_requirement
from outrider.message.envelope import Envelope, Recipient
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript

FAST = SmtpTimeouts(
    connect=2, greeting=2, ehlo=2, mail=2, rcpt=2, data_init=2, data_block=2, data_done=2,
    rset=2, quit=1, starttls=2,
)  # fmt: skip
MX = "mx.example.test"


@pytest.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[ScriptedSmtpServer]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(MX).configure_cert(ctx)
    async with ScriptedSmtpServer(tls_context=ctx) as server:
        yield server


@pytest.fixture
async def plain_server() -> AsyncIterator[ScriptedSmtpServer]:
    async with ScriptedSmtpServer() as server:
        yield server


async def connect(
    server: ScriptedSmtpServer, tls: TlsRequirement, host: str = MX, **kw: object
) -> SmtpSession:
    return await SmtpSession.connect(
        server.host,
        server.port,
        helo_name="client.test",
        timeouts=FAST,
        server_hostname=host,
        tls=tls,
        **kw,  # type: ignore[arg-type]
    )


async def failure(
    server: ScriptedSmtpServer, tls: TlsRequirement, host: str = MX
) -> SmtpConnectError:
    with pytest.raises(SmtpConnectError) as info:
        await connect(server, tls, host)
    assert info.value.tls_failure
    return info.value


async def test_required_verified_succeeds_and_delivers(
    tls_server: ScriptedSmtpServer, ca_file: Path
) -> None:
    session = await connect(tls_server, TlsRequirement("required", "ca+hostname", ca_file))
    try:
        assert session.tls_verified and session.tls_version in ("TLSv1.2", "TLSv1.3")
        assert session.tls_cipher
        envelope = Envelope("Q1", "a@client.test", [], time.time())
        result = await session.send(
            envelope, [Recipient("b@example.test")], b"Subject: x\r\n\r\nhi\r\n"
        )
        assert [r.reply.code for r in result.results] == [250]
    finally:
        await session.close()
    assert tls_server.messages[0].tls


async def test_wrong_host_name_fails(
    tls_server: ScriptedSmtpServer, ca_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    req = TlsRequirement("required", "ca+hostname", ca_file, source="mta-sts")
    with caplog.at_level(logging.WARNING, "outrider.delivery.tls"):
        exc = await failure(tls_server, req, host="mx.other.test")
    assert exc.tls_reason.startswith("certificate verify failed")
    assert "mx.other.test" in exc.tls_reason  # Python names the mismatched host
    assert exc.reply is not None and exc.reply.code == 451 and exc.reply.enhanced == "4.7.5"
    assert "certificate verify failed" in caplog.text and "mta-sts" in caplog.text


async def test_ca_level_ignores_host_name(tls_server: ScriptedSmtpServer, ca_file: Path) -> None:
    session = await connect(tls_server, TlsRequirement("required", "ca", ca_file), "mx.other.test")
    assert session.tls_verified
    await session.close()


@pytest.mark.parametrize("verify", ["ca", "ca+hostname"])
async def test_unknown_ca_fails(
    tls_server: ScriptedSmtpServer, unknown_ca_file: Path, verify: TlsVerify
) -> None:
    exc = await failure(tls_server, TlsRequirement("required", verify, unknown_ca_file))
    assert exc.tls_reason.startswith("certificate verify failed")
    assert exc.reply is not None and exc.reply.enhanced == "4.7.5"


async def test_no_starttls_offered_fails_when_required(
    plain_server: ScriptedSmtpServer, ca_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exc = await failure(plain_server, TlsRequirement("required", "ca+hostname", ca_file))
    assert exc.tls_reason == "STARTTLS not offered"
    assert exc.reply is not None and (exc.reply.code, exc.reply.enhanced) == (451, "4.7.4")
    assert "STARTTLS not offered" in caplog.text
    assert plain_server.sessions[0].commands[-1] == "QUIT"  # polite goodbye, no MAIL


async def test_required_without_verification_accepts_unknown_ca(
    tls_server: ScriptedSmtpServer,
) -> None:
    session = await connect(tls_server, TlsRequirement("required", "none"), "mx.other.test")
    assert session.tls_version is not None and not session.tls_verified
    await session.close()


async def test_opportunistic_succeeds_with_unknown_ca(tls_server: ScriptedSmtpServer) -> None:
    req = tls_requirement(
        use_starttls=True, require_starttls=False, tls_verify="none", tls_ca_file=None, sts=None
    )
    session = await connect(tls_server, req, "mx.other.test")
    assert session.tls_version is not None and not session.tls_verified
    await session.close()


async def test_opportunistic_continues_in_clear(plain_server: ScriptedSmtpServer) -> None:
    session = await connect(plain_server, TlsRequirement("opportunistic", "none"))
    assert session.tls_version is None and session.usable and not session.tls_verified
    await session.close()


async def test_mode_none_skips_offered_starttls(tls_server: ScriptedSmtpServer) -> None:
    session = await connect(tls_server, TlsRequirement("none", "none"))
    assert session.tls_version is None and session.extensions.starttls
    await session.close()
    assert "STARTTLS" not in tls_server.sessions[0].commands


async def test_starttls_omitted_by_tls_server(ca: trustme.CA, ca_file: Path) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(MX).configure_cert(ctx)
    script = ServerScript(omit_extensions=frozenset({"STARTTLS"}))
    async with ScriptedSmtpServer(script, tls_context=ctx) as server:
        exc = await failure(server, TlsRequirement("required", "ca", ca_file))
    assert exc.tls_reason == "STARTTLS not offered"


async def test_missing_ca_file_is_a_local_error(
    plain_server: ScriptedSmtpServer, tmp_path: Path
) -> None:
    exc = await failure(plain_server, TlsRequirement("required", "ca", tmp_path / "nope.pem"))
    assert exc.reply is not None and exc.reply.enhanced == "4.3.5"
    assert plain_server.connections == 0  # refused before connecting


async def test_mta_sts_enforce_requirement_end_to_end(
    tls_server: ScriptedSmtpServer, ca_file: Path, unknown_ca_file: Path
) -> None:
    policy = StsPolicy("enforce", ("*.example.test",), 3600, "id", time.time())
    req = tls_requirement(
        use_starttls=True,
        require_starttls=False,
        tls_verify="none",
        tls_ca_file=ca_file,
        sts=policy,
    )
    assert req.permits_mx(MX) and not req.permits_mx("mx.evil.test")
    session = await connect(tls_server, req)
    assert session.tls_verified
    await session.close()
    bad = tls_requirement(
        use_starttls=True,
        require_starttls=False,
        tls_verify="none",
        tls_ca_file=unknown_ca_file,
        sts=policy,
    )
    exc = await failure(tls_server, bad)
    assert exc.reply is not None and exc.reply.enhanced == "4.7.5"


async def test_opportunistic_verified_falls_back_to_unverified_tls(
    tls_server: ScriptedSmtpServer, unknown_ca_file: Path
) -> None:
    req = tls_requirement(
        use_starttls=True,
        require_starttls=False,
        tls_verify="ca+hostname",
        tls_ca_file=unknown_ca_file,
        sts=None,
    )
    assert req.mode == "opportunistic"
    exc = await failure(tls_server, req)
    assert exc.tls_reason.startswith("certificate verify failed")
    step = req.fallback()
    assert step is not None
    session = await connect(tls_server, step)
    assert session.tls_version is not None and not session.tls_verified
    await session.close()
