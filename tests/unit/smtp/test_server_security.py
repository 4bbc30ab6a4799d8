"""The sans-I/O core's security features: STARTTLS, AUTH, pregreet, per-connection limits."""

from __future__ import annotations

import base64

import pytest

from outrider.smtp.replies import Reply
from outrider.smtp.server import (
    AuthRequested,
    AuthResponse,
    ConnectionClosed,
    Hello,
    MailFrom,
    ProtocolUsageError,
    RcptTo,
    ServerConfig,
    ServerConnection,
    StartTlsRequested,
)
from tests.unit.smtp.test_server import codes, drain, feed, replies

MECHS = ("SCRAM-SHA-256", "PLAIN", "LOGIN")


def make(*, secure: bool = False, **kwargs: object) -> ServerConnection:
    conn = ServerConnection(ServerConfig("mx.test", **kwargs), secure=secure)  # type: ignore[arg-type]
    conn.send_greeting()
    conn.data_to_send()
    return conn


def ehlo(conn: ServerConnection) -> list[str]:
    _, out = feed(conn, b"EHLO client.test\r\n")
    return out.decode().split("\r\n")


# --- STARTTLS ---------------------------------------------------------------------------


def test_starttls_advertised_only_before_tls() -> None:
    conn = make(starttls=True)
    assert "250-STARTTLS" in ehlo(conn) or "250 STARTTLS" in ehlo(conn)
    assert not any("STARTTLS" in line for line in ehlo(make(starttls=True, secure=True)))
    assert not any("STARTTLS" in line for line in ehlo(make()))


def test_starttls_discards_pipelined_plaintext_and_forgets_ehlo() -> None:
    conn = make(starttls=True)
    ehlo(conn)
    conn.receive_data(b"STARTTLS\r\nRSET\r\nMAIL FROM:<a@b.test>\r\n")
    assert conn.next_event() == StartTlsRequested()
    conn.accept()
    assert conn.data_to_send() == b"220 2.0.0 Ready to start TLS\r\n"
    assert conn.tls_pending
    conn.receive_data(b"NOOP\r\n")  # plaintext before the handshake: dropped too
    assert conn.next_event() is None and conn.data_to_send() == b""
    conn.tls_established()
    assert conn.secure and not conn.tls_pending
    events, out = feed(conn, b"MAIL FROM:<a@b.test>\r\n")
    assert events == [] and codes(out) == ["503 5.5.1"]  # EHLO forgotten (RFC 3207 4.2)
    events, _ = feed(conn, b"EHLO again.test\r\n")
    assert events == [Hello("again.test", True)]


@pytest.mark.parametrize(
    ("setup", "line", "expected"),
    [
        (b"", b"STARTTLS\r\n", "503 5.5.1"),  # before EHLO
        (b"EHLO c\r\n", b"STARTTLS now\r\n", "501 5.5.4"),
        (b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n", b"STARTTLS\r\n", "503 5.5.1"),
        (b"EHLO c\r\n", b"STARTTLSX\r\n", "500 5.5.2"),
    ],
)
def test_starttls_errors(setup: bytes, line: bytes, expected: str) -> None:
    conn = make(starttls=True)
    if setup:
        feed(conn, setup)
    events, out = feed(conn, line)
    assert events == [] and codes(out) == [expected]


def test_starttls_when_already_secure_or_unavailable() -> None:
    conn = make(starttls=True, secure=True)
    ehlo(conn)
    assert codes(feed(conn, b"STARTTLS\r\n")[1]) == ["503 5.5.1"]
    conn = make()
    ehlo(conn)
    assert codes(feed(conn, b"starttls\r\n")[1]) == ["502 5.5.1"]


def test_starttls_can_be_refused() -> None:
    conn = make(starttls=True)
    ehlo(conn)
    conn.receive_data(b"STARTTLS\r\nNOOP\r\n")
    assert conn.next_event() == StartTlsRequested()
    conn.reject(Reply(454, "4.7.0", "TLS not now"))
    drain(conn)
    assert codes(conn.data_to_send()) == ["454 4.7.0", "250 2.0.0"]
    assert not conn.secure


def test_tls_established_needs_a_pending_starttls() -> None:
    with pytest.raises(ProtocolUsageError):
        make(starttls=True).tls_established()


# --- AUTH -------------------------------------------------------------------------------


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def authed_conn(**kwargs: object) -> ServerConnection:
    conn = make(auth_mechanisms=MECHS, secure=True, **kwargs)
    ehlo(conn)
    return conn


def test_auth_advertised_only_with_tls_or_plaintext_allowed() -> None:
    assert "250 AUTH SCRAM-SHA-256 PLAIN LOGIN" in ehlo(make(auth_mechanisms=MECHS, secure=True))
    assert not any("AUTH" in line for line in ehlo(make(auth_mechanisms=MECHS)))
    assert "250 AUTH SCRAM-SHA-256 PLAIN LOGIN" in ehlo(
        make(auth_mechanisms=MECHS, auth_plaintext=True)
    )


def test_auth_without_tls_needs_encryption() -> None:
    conn = make(auth_mechanisms=MECHS)
    ehlo(conn)
    assert codes(feed(conn, b"AUTH PLAIN " + b64(b"\0u\0p") + b"\r\n")[1]) == ["538 5.7.11"]


def test_auth_plain_with_initial_response() -> None:
    conn = authed_conn()
    conn.receive_data(b"AUTH plain " + b64(b"\0u\0p") + b"\r\nNOOP\r\n")
    assert conn.next_event() == AuthRequested("PLAIN", b"\0u\0p")
    with pytest.raises(ProtocolUsageError):
        conn.accept()
    conn.auth_success("u")
    drain(conn)
    assert codes(conn.data_to_send()) == ["235 2.7.0", "250 2.0.0"]
    assert conn.authenticated == "u"
    assert not any("AUTH" in line for line in ehlo(conn))  # not offered again
    assert codes(feed(conn, b"AUTH PLAIN\r\n")[1]) == ["503 5.5.1"]


def test_auth_challenge_exchange_and_failure() -> None:
    conn = authed_conn()
    conn.receive_data(b"AUTH LOGIN\r\n")
    assert conn.next_event() == AuthRequested("LOGIN", None)
    conn.auth_challenge(b"Username:")
    assert conn.data_to_send() == b"334 VXNlcm5hbWU6\r\n"
    conn.receive_data(b64(b"user") + b"\r\n")
    assert conn.next_event() == AuthResponse(b"user")
    conn.auth_challenge(b"Password:")
    conn.data_to_send()
    conn.receive_data(b64(b"bad") + b"\r\n")
    assert conn.next_event() == AuthResponse(b"bad")
    conn.auth_failure()
    assert conn.data_to_send() == b"535 5.7.8 Authentication credentials invalid\r\n"
    assert conn.authenticated is None


def test_empty_initial_response_and_empty_challenge() -> None:
    conn = authed_conn()
    conn.receive_data(b"AUTH PLAIN =\r\n")
    assert conn.next_event() == AuthRequested("PLAIN", b"")
    conn.auth_challenge(b"")
    assert conn.data_to_send() == b"334 \r\n"
    conn.receive_data(b"\r\n")
    assert conn.next_event() == AuthResponse(b"")


@pytest.mark.parametrize(
    ("response", "expected"), [(b"*", "501 5.0.0"), (b"not base64!", "501 5.5.2")]
)
def test_auth_response_cancel_and_garbage(response: bytes, expected: str) -> None:
    conn = authed_conn()
    feed(conn, b"AUTH LOGIN\r\n")
    conn.auth_challenge(b"Username:")
    conn.data_to_send()
    events, out = feed(conn, response + b"\r\nNOOP\r\n")
    assert events == [] and codes(out) == [expected, "250 2.0.0"]


def test_over_long_auth_line() -> None:
    conn = authed_conn()
    feed(conn, b"AUTH PLAIN\r\n")
    conn.auth_challenge(b"")
    conn.data_to_send()
    events, out = feed(conn, [b"A" * 13000, b"A" * 100, b"\r\nNOOP\r\n"])
    assert events == [] and codes(out) == ["500 5.5.6", "250 2.0.0"]


@pytest.mark.parametrize(
    ("setup", "line", "expected"),
    [
        (b"", b"AUTH PLAIN\r\n", "503 5.5.1"),  # before EHLO
        (b"EHLO c\r\n", b"AUTH\r\n", "501 5.5.4"),
        (b"EHLO c\r\n", b"AUTH PLAIN a b\r\n", "501 5.5.4"),
        (b"EHLO c\r\n", b"AUTH CRAM-MD5\r\n", "504 5.5.4"),
        (b"EHLO c\r\n", b"AUTH PLAIN ***\r\n", "501 5.5.2"),
        (b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n", b"AUTH PLAIN\r\n", "503 5.5.1"),
    ],
)
def test_auth_errors(setup: bytes, line: bytes, expected: str) -> None:
    conn = make(auth_mechanisms=MECHS, secure=True)
    if setup:
        feed(conn, setup)
    events, out = feed(conn, line)
    assert events == [] and codes(out) == [expected]


def test_auth_not_configured() -> None:
    conn = make(secure=True)
    ehlo(conn)
    assert codes(feed(conn, b"AUTH PLAIN\r\n")[1]) == ["502 5.5.1"]
    assert codes(feed(conn, b"MAIL FROM:<a@b.test> AUTH=<>\r\n")[1]) == ["555 5.5.4"]


def test_mail_auth_parameter_accepted_when_auth_is_offered() -> None:
    conn = authed_conn()
    events, _ = feed(conn, b"MAIL FROM:<a@b.test> AUTH=a+2Bb@b.test\r\n")
    assert isinstance(events[0], MailFrom) and events[0].params.auth == "a+b@b.test"


def test_require_auth_before_mail() -> None:
    conn = authed_conn(require_auth=True)
    assert codes(feed(conn, b"MAIL FROM:<a@b.test>\r\n")[1]) == ["530 5.7.0"]
    feed(conn, b"AUTH PLAIN " + b64(b"\0u\0p") + b"\r\n")
    conn.auth_success("u")
    events, out = feed(conn, b"MAIL FROM:<a@b.test>\r\n")
    assert isinstance(events[0], MailFrom) and codes(out) == ["235 2.7.0", "250 2.1.0"]


def test_require_auth_needs_mechanisms() -> None:
    with pytest.raises(ValueError, match="require_auth"):
        ServerConfig("mx.test", require_auth=True)


# --- pregreet, refusal, per-connection limits ---------------------------------------------


def test_client_speaking_before_a_held_greeting_is_rejected() -> None:
    conn = ServerConnection(ServerConfig("mx.test"))
    conn.hold_greeting()
    conn.receive_data(b"EHLO spammer\r\nMAIL FROM:<a@b.test>\r\n")
    assert conn.next_event() is None and conn.data_to_send() == b""
    conn.send_greeting()
    assert replies(conn.data_to_send()) == [
        "554 5.5.0 Protocol error: client spoke before the greeting"
    ]
    assert conn.next_event() == ConnectionClosed()


def test_patient_client_after_a_held_greeting() -> None:
    conn = ServerConnection(ServerConfig("mx.test"))
    conn.hold_greeting()
    conn.send_greeting()
    assert conn.data_to_send().startswith(b"220 ")
    assert feed(conn, b"EHLO c\r\n")[0] == [Hello("c", True)]


def test_refuse_instead_of_greeting() -> None:
    conn = ServerConnection(ServerConfig("mx.test"))
    conn.refuse(Reply(421, "4.7.0", "Too many connections"))
    assert conn.data_to_send() == b"421 4.7.0 Too many connections\r\n"
    assert conn.closed


def test_max_messages_per_connection() -> None:
    conn = make(max_connection_messages=2)
    ehlo(conn)
    _, out = feed(conn, b"MAIL FROM:<a@b.test>\r\nRSET\r\n" * 2 + b"MAIL FROM:<a@b.test>\r\n")
    assert codes(out)[-1] == "421 4.7.0"
    assert conn.closed


def test_max_recipients_per_connection() -> None:
    conn = make(max_connection_recipients=2)
    ehlo(conn)
    lines = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<a@c.test>\r\nRCPT TO:<b@c.test>\r\nRSET\r\n"
    lines += b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@c.test>\r\n"
    events, out = feed(conn, lines)
    assert sum(isinstance(e, RcptTo) for e in events) == 2
    assert codes(out)[-1] == "452 4.5.3"


LIMITED_SESSION = (
    b"MAIL FROM:<a@b.test>\r\nRCPT TO:<a@c.test>\r\nRCPT TO:<b@c.test>\r\nRSET\r\n" * 3
)


def test_trusted_client_is_exempt_from_per_connection_limits() -> None:
    conn = make(max_connection_messages=2, max_connection_recipients=2)
    conn.lift_connection_limits()  # the session does this for an exempt relay-networks client
    ehlo(conn)
    events, out = feed(conn, LIMITED_SESSION)
    assert sum(isinstance(e, MailFrom) for e in events) == 3
    assert sum(isinstance(e, RcptTo) for e in events) == 6
    assert not conn.closed and "421 4.7.0" not in codes(out) and "452 4.5.3" not in codes(out)


@pytest.mark.parametrize("lifts", [True, False])
def test_auth_lifts_per_connection_limits_when_configured(lifts: bool) -> None:
    conn = authed_conn(
        max_connection_messages=2, max_connection_recipients=2, auth_lifts_connection_limits=lifts
    )
    feed(conn, b"MAIL FROM:<a@b.test>\r\nRSET\r\n")  # counted before AUTH as well
    conn.receive_data(b"AUTH PLAIN " + b64(b"\0u\0p") + b"\r\n")
    assert isinstance(conn.next_event(), AuthRequested)
    conn.auth_success("u")
    conn.data_to_send()
    events, out = feed(conn, LIMITED_SESSION)
    mails = sum(isinstance(e, MailFrom) for e in events)
    if lifts:
        assert (mails, sum(isinstance(e, RcptTo) for e in events)) == (3, 6)
        assert not conn.closed
    else:
        assert mails == 1 and codes(out)[-1] == "421 4.7.0" and conn.closed


@pytest.mark.parametrize(
    "line",
    [
        b"MAIL FROM:<a\x00b@b.test>\r\n",
        b"MAIL FROM:<a@b.test> ENVID=x\x00y\r\n",
        b"MAIL FROM:<a@b.test> ENVID=x+0Dy\r\n",
        b"MAIL FROM:<a@b.test> AUTH=x+0Ay\r\n",
        b"MAIL FROM:<a@b\rc.test>\r\n",
    ],
)
def test_control_characters_never_pass(line: bytes) -> None:
    conn = authed_conn()
    events, out = feed(conn, line)
    assert events == []
    assert codes(out)[0] in ("501 5.5.4", "500 5.5.2")
