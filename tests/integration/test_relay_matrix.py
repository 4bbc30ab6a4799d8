"""Relay control: who may send where, and an open-relay battery for anonymous outsiders.

In-process listeners on 127.0.0.1. "Outside" clients are made by configuring
relay-networks that do not contain 127.0.0.1; "authenticated" clients log in with
AUTH PLAIN (plaintext allowed on loopback here, to keep TLS out of this test).
"""

from __future__ import annotations

import base64
import smtplib
from collections.abc import AsyncIterator

import pytest

from tests.support.inbound import (
    HOSTNAME,
    POSTMASTER,
    FakeUsers,
    InboundServer,
    in_thread,
    start_server,
)

RELAY_DOMAINS = ("relay.test", "xn--bcher-kva.test", "dömäin.test")
MESSAGE = b"Subject: relay test\r\n\r\nbody\r\n"
ACCEPTED, DENIED = 250, 554


@pytest.fixture(params=["relay-networks", "authenticated", "anonymous"])
async def client_kind(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, InboundServer]]:
    kind: str = request.param
    server = await start_server(
        relay_domains=RELAY_DOMAINS,
        relay_networks=("127.0.0.0/8",) if kind == "relay-networks" else ("10.9.9.9/32",),
        auth_mechanisms=("PLAIN",),
        auth_plaintext=True,
        users=FakeUsers({"alice": "pw"}),
    )
    yield kind, server
    await server.stop()


def _attempt(port: int, rcpt: str, *, login: bool, smtputf8: bool = False) -> int:
    """One transaction to ``rcpt`` (sent verbatim); returns the RCPT reply code."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5) as smtp:
        smtp.command_encoding = "utf-8"
        smtp.ehlo()
        if login:
            token = base64.b64encode(b"\0alice\0pw").decode()
            assert smtp.docmd("AUTH", f"PLAIN {token}")[0] == 235
        assert smtp.docmd("MAIL", "FROM:<a@sender.test>" + (" SMTPUTF8" if smtputf8 else ""))[0]
        code = smtp.docmd("RCPT", f"TO:{rcpt}")[0]
        if code == 250:
            smtp.data(MESSAGE)
    return code


@pytest.mark.parametrize("domain", ["relay.test", "outside.test"])
async def test_relay_matrix(client_kind: tuple[str, InboundServer], domain: str) -> None:
    kind, server = client_kind
    code = await in_thread(_attempt, server.port, f"<user@{domain}>", login=kind == "authenticated")
    expected = ACCEPTED if domain == "relay.test" or kind != "anonymous" else DENIED
    assert code == expected
    if code == ACCEPTED:
        [stored] = server.stored
        assert [r.address for r in stored.envelope.recipients] == [f"user@{domain}"]
        assert stored.envelope.auth_user == ("alice" if kind == "authenticated" else "")
    else:
        assert server.stored == []


# (RCPT argument as sent, expected code, the stored recipient when accepted)
BATTERY = [
    # the percent hack and bang paths are never interpreted: mail *for* relay.test
    ("<user%outside.test@relay.test>", ACCEPTED, "user%outside.test@relay.test"),
    ("<outside.test!user@relay.test>", ACCEPTED, "outside.test!user@relay.test"),
    ("<outside.test!user>", 501, None),
    ("<user%outside.test>", 501, None),
    ("<user@outside.test%relay.test>", 501, None),
    # source routes are stripped (RFC 5321 4.1.1.3): the final mailbox decides
    ("<@relay.test:user@outside.test>", DENIED, None),
    ("<@relay.test,@relay.test:user@outside.test>", DENIED, None),
    ("<@outside.test:user@relay.test>", ACCEPTED, "user@relay.test"),
    # quoted local parts containing @
    ('<"user@outside.test"@relay.test>', ACCEPTED, '"user@outside.test"@relay.test'),
    ('<"user@relay.test"@outside.test>', DENIED, None),
    ('<"user@outside.test">', 501, None),
    ("<user@outside.test@relay.test>", 501, None),
    # trailing dots
    ("<user@outside.test.>", DENIED, None),
    ("<user@relay.test.>", ACCEPTED, "user@relay.test"),
    ("<user@relay.test..>", 501, None),
    # address literals never match a relay domain
    ("<user@[127.0.0.99]>", DENIED, None),
    ("<user@[127.0.0.1]>", DENIED, None),
    ("<user@[IPv6:::1]>", DENIED, None),
    # look-alike domains
    ("<user@sub.relay.test>", DENIED, None),
    ("<user@relay.test.outside.test>", DENIED, None),
    ("<user@relay-test>", DENIED, None),
    # the postmaster is reachable by anyone (RFC 5321 4.5.1), queued for [server] postmaster
    ("<postmaster>", ACCEPTED, POSTMASTER),
    ("<PostMaster>", ACCEPTED, POSTMASTER),
    (f"<POSTMASTER@{HOSTNAME.upper()}>", ACCEPTED, POSTMASTER),
    ("<postmaster@outside.test>", DENIED, None),
    (f"<postmaster@sub.{HOSTNAME}>", DENIED, None),
    # case and IDN variants of relay domains
    ("<user@RELAY.TEST>", ACCEPTED, "user@RELAY.TEST"),
    ("<user@Relay.Test.>", ACCEPTED, "user@Relay.Test"),
    ("<user@bücher.test>", ACCEPTED, "user@bücher.test"),
    ("<user@BÜCHER.test>", ACCEPTED, "user@BÜCHER.test"),
    ("<user@XN--BCHER-KVA.test>", ACCEPTED, "user@XN--BCHER-KVA.test"),
    ("<user@xn--dmin-moa0i.test>", ACCEPTED, "user@xn--dmin-moa0i.test"),
    ("<user@dömäin.test>", ACCEPTED, "user@dömäin.test"),
    ("<user@bucher.test>", DENIED, None),
]


@pytest.fixture
async def outsider() -> AsyncIterator[InboundServer]:
    server = await start_server(relay_domains=RELAY_DOMAINS, relay_networks=("10.9.9.9/32",))
    yield server
    await server.stop()


@pytest.mark.parametrize(("rcpt", "expected", "stored_as"), BATTERY)
async def test_open_relay_battery_for_anonymous_outsiders(
    outsider: InboundServer, rcpt: str, expected: int, stored_as: str | None
) -> None:
    code = await in_thread(_attempt, outsider.port, rcpt, login=False, smtputf8=True)
    assert code == expected
    if stored_as is None:
        assert outsider.stored == []
        return
    [stored] = outsider.stored
    [recipient] = stored.envelope.recipients
    assert recipient.address == stored_as  # verbatim: only the postmaster is rewritten
    # routing uses the domain after the last @ only: a relay domain, never outside.test
    assert recipient.domain.rstrip(".") in {"relay.test", *_variants()}


def _variants() -> set[str]:
    return {"bücher.test", "xn--bcher-kva.test", "dömäin.test", "xn--dmin-moa0i.test"}
