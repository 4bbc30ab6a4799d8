"""SMTP AUTH end to end: mechanisms over TLS, plaintext rules, lockout, submission role.

In-process listeners, the real user store (scrypt hashes, SCRAM keys) in tmp_path,
TLS from a trustme CA, clients from smtplib plus a small SCRAM-SHA-256 client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import smtplib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from outrider.auth.store import UserStore
from outrider.auth.throttle import AuthThrottle
from outrider.inbound.limits import ConnectionGate
from tests.support.inbound import (
    InboundServer,
    client_tls,
    in_thread,
    raw_dialogue,
    start_server,
    tls_server_context,
)

MECHANISMS = ("SCRAM-SHA-256", "PLAIN", "LOGIN")
MESSAGE = b"From: alice@sender.test\r\nTo: x@outside.test\r\nSubject: hi\r\n\r\nbody\r\n"
OUTSIDE = ("10.9.9.9/32",)  # relay-networks that do not include the test client


@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    store = UserStore(tmp_path / "users")
    store.add("alice", "correct horse", allowed_senders=["alice@sender.test", "sender.test"])
    return store


@pytest.fixture
def throttle() -> AuthThrottle:
    return AuthThrottle(
        max_failures=3, window=60.0, block_time=60.0, first_delay=0.01, max_delay=0.05
    )


@pytest.fixture
async def server(
    ca: trustme.CA, tmp_path: Path, users: UserStore, throttle: AuthThrottle
) -> AsyncIterator[InboundServer]:
    server = await start_server(
        tls=tls_server_context(ca, tmp_path / "tls"),
        starttls=True,
        auth_mechanisms=MECHANISMS,
        relay_networks=OUTSIDE,
        users=users,
        throttle=throttle,
        gate=ConnectionGate(max_connections=100, max_per_client=50, rate_per_client=None),
    )
    yield server
    await server.stop()


def _tls_session(port: int, ctx: ssl.SSLContext) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5)
    smtp.ehlo()
    smtp.starttls(context=ctx)
    smtp.ehlo()
    return smtp


def _scram_login(smtp: smtplib.SMTP, user: str, password: str) -> tuple[int, bytes]:
    """RFC 5802 client side, enough for a test; returns the final reply."""
    nonce = secrets.token_urlsafe(18)
    first_bare = f"n={user},r={nonce}"
    code, challenge = smtp.docmd(
        "AUTH", "SCRAM-SHA-256 " + base64.b64encode(f"n,,{first_bare}".encode()).decode()
    )
    assert code == 334, (code, challenge)
    server_first = base64.b64decode(challenge).decode()
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    assert fields["r"].startswith(nonce)
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = f"c={base64.b64encode(b'n,,').decode()},r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(stored_key, auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    final = f"{without_proof},p={base64.b64encode(proof).decode()}"
    code, challenge = smtp.docmd(base64.b64encode(final.encode()).decode())
    if code != 334:
        return code, challenge
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    expected = b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, "sha256"))
    assert base64.b64decode(challenge) == expected  # the server knows the password too
    return smtp.docmd("")


def _login_and_send(port: int, ctx: ssl.SSLContext, mechanism: str) -> tuple[str, int]:
    with _tls_session(port, ctx) as smtp:
        offered = smtp.esmtp_features.get("auth", "")
        if mechanism == "SCRAM-SHA-256":
            code, _ = _scram_login(smtp, "alice", "correct horse")
        else:
            smtp.user, smtp.password = "alice", "correct horse"
            code, _ = smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
        if code == 235:
            smtp.sendmail("alice@sender.test", ["x@outside.test"], MESSAGE)
    return offered, code


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_auth_over_tls_then_relay_anywhere(
    server: InboundServer, ca: trustme.CA, mechanism: str
) -> None:
    offered, code = await in_thread(_login_and_send, server.port, client_tls(ca), mechanism)
    assert offered.split() == list(MECHANISMS)
    assert code == 235
    [stored] = server.stored
    assert stored.envelope.auth_user == "alice"
    assert [r.address for r in stored.envelope.recipients] == ["x@outside.test"]
    assert b"with ESMTPSA id" in stored.data


async def test_no_auth_before_tls(server: InboundServer) -> None:
    def dialogue() -> tuple[bool, int, int]:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
            smtp.ehlo()
            auth = smtp.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0x").decode())[0]
            smtp.mail("a@sender.test")
            return smtp.has_extn("auth"), auth, smtp.rcpt("x@outside.test")[0]

    assert await in_thread(dialogue) == (False, 538, 554)


def _fail_login(port: int, ctx: ssl.SSLContext, attempts: int) -> list[int]:
    codes = []
    with _tls_session(port, ctx) as smtp:
        for _ in range(attempts):
            response = base64.b64encode(b"\0alice\0wrong").decode()
            codes.append(smtp.docmd("AUTH", f"PLAIN {response}")[0])
    return codes


async def test_failures_lock_the_client_out(
    server: InboundServer, ca: trustme.CA, throttle: AuthThrottle
) -> None:
    codes = await in_thread(_fail_login, server.port, client_tls(ca), 4)
    assert codes == [535, 535, 535, 454]
    assert throttle.is_blocked("127.0.0.1", server.ctx.monotonic())
    # a new connection from the blocked address is refused before the greeting
    assert (await in_thread(raw_dialogue, server.port)).startswith(b"421 4.7.0 ")


async def test_cancel_and_bad_base64(server: InboundServer, ca: trustme.CA) -> None:
    def dialogue() -> list[int]:
        with _tls_session(server.port, client_tls(ca)) as smtp:
            first = smtp.docmd("AUTH", "LOGIN")[0]
            cancelled = smtp.docmd("*")[0]
            bad = smtp.docmd("AUTH", "PLAIN !!!")[0]
            unknown = smtp.docmd("AUTH", "CRAM-MD5")[0]
            return [first, cancelled, bad, unknown]

    assert await in_thread(dialogue) == [334, 501, 501, 504]


async def test_users_file_changes_apply_without_restart(
    server: InboundServer, ca: trustme.CA, users: UserStore, tmp_path: Path
) -> None:
    UserStore(users.path).add("bob", "hunter2 hunter2")  # what `outrider user add` does

    def dialogue() -> int:
        with _tls_session(server.port, client_tls(ca)) as smtp:
            return smtp.login("bob", "hunter2 hunter2")[0]

    assert await in_thread(dialogue) == 235


async def test_plaintext_auth_when_allowed_on_loopback(users: UserStore) -> None:
    server = await start_server(
        auth_mechanisms=MECHANISMS, auth_plaintext=True, users=users, relay_networks=OUTSIDE
    )
    try:

        def dialogue() -> tuple[bool, int]:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                smtp.ehlo()
                return smtp.has_extn("auth"), smtp.login("alice", "correct horse")[0]

        assert await in_thread(dialogue) == (True, 235)
    finally:
        await server.stop()


@pytest.fixture
async def submission(
    ca: trustme.CA, tmp_path: Path, users: UserStore
) -> AsyncIterator[InboundServer]:
    server = await start_server(
        tls=tls_server_context(ca, tmp_path / "tls"),
        starttls=True,
        auth_mechanisms=MECHANISMS,
        require_auth=True,
        role="submission",
        relay_networks=("127.0.0.0/8",),  # even trusted networks must authenticate
        users=users,
        add_missing_headers=True,
    )
    yield server
    await server.stop()


async def test_submission_requires_auth_before_mail(
    submission: InboundServer, ca: trustme.CA
) -> None:
    def dialogue() -> tuple[int, int]:
        with _tls_session(submission.port, client_tls(ca)) as smtp:
            before = smtp.mail("alice@sender.test")[0]
            smtp.login("alice", "correct horse")
            return before, smtp.mail("alice@sender.test")[0]

    assert await in_thread(dialogue) == (530, 250)


async def test_submission_refuses_a_sender_the_user_does_not_own(
    submission: InboundServer, ca: trustme.CA
) -> None:
    def dialogue() -> tuple[int, int, int]:
        with _tls_session(submission.port, client_tls(ca)) as smtp:
            smtp.login("alice", "correct horse")
            forged = smtp.mail("ceo@bank.test")[0]
            smtp.rset()
            null = smtp.mail("")[0]
            smtp.rset()
            return forged, null, smtp.mail("other@SENDER.test")[0]

    assert await in_thread(dialogue) == (553, 553, 250)


async def test_submission_adds_message_id_and_date(
    submission: InboundServer, ca: trustme.CA
) -> None:
    def send(message: bytes) -> None:
        with _tls_session(submission.port, client_tls(ca)) as smtp:
            smtp.login("alice", "correct horse")
            smtp.sendmail("alice@sender.test", ["x@outside.test"], message)

    await in_thread(send, b"Subject: bare\r\n\r\nbody\r\n")
    complete = b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <m1@sender.test>\r\n\r\nb\r\n"
    await in_thread(send, complete)
    bare, full = submission.stored
    assert bare.envelope.msg_id == f"<{bare.envelope.queue_id}@mta.outrider.test>"
    assert b"\r\nDate: " in bare.data
    assert full.envelope.msg_id == "<m1@sender.test>"
    assert full.data.count(b"\r\nDate: ") == 1
    assert full.data.count(b"Message-ID:") == 1


async def test_per_user_sending_rate_limit(
    submission: InboundServer, ca: trustme.CA, users: UserStore
) -> None:
    users.add("bob", "battery staple", max_msg_rate="2/h")

    def dialogue() -> list[int]:
        codes = []
        with _tls_session(submission.port, client_tls(ca)) as smtp:
            smtp.login("bob", "battery staple")
            for _ in range(3):
                codes.append(smtp.mail("bob@anywhere.test")[0])
                smtp.rset()
        return codes

    assert await in_thread(dialogue) == [250, 250, 450]
