"""Mail-loop defences at the intake: the hop count and address literals (issue 8.1)."""

from __future__ import annotations

import socket
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from outrider.auth.rates import UserRateLimiter
from outrider.config.loader import parse_config
from outrider.config.model import Config, ConfigError
from outrider.intake import CONTINUE, IntakePipeline, Verdict
from outrider.intake.build import intake_checks
from outrider.intake.checks import (
    LITERAL_RECIPIENT,
    LITERAL_SENDER,
    TOO_MANY_HOPS,
    AddressLiterals,
    HopLimit,
    is_address_literal,
)
from outrider.intake.verdict import VerdictResult
from outrider.message.headers import count_fields, has_fields
from outrider.runtime.listeners import listener_name
from tests.unit.intake.support import MAIL, SMTP

TRUSTED = replace(SMTP, client_trusted=True)
AUTHENTICATED = replace(SMTP, auth_user="alice")


def now(result: VerdictResult) -> Verdict:
    assert isinstance(result, Verdict)
    return result


def hops(n: int, body: bytes = b"body\r\n") -> bytes:
    trace = b"".join(
        b"Received: from h%d.test by h%d.test; date\r\n" % (i, i + 1) for i in range(n)
    )
    return trace + b"Subject: loop\r\n\r\n" + body


# -- the hop count -------------------------------------------------------------------------


def test_count_fields_counts_the_header_block_only() -> None:
    assert count_fields(hops(3), "Received") == 3
    assert count_fields(hops(0), "Received") == 0
    assert count_fields(b"\r\nReceived: not a header\r\n", "Received") == 0  # no header block
    assert count_fields(hops(2, body=b"Received: in the body\r\n" * 100), "Received") == 2
    assert count_fields(b"Received: a\r\nSubject: no body", "Received") == 1


def test_count_fields_is_exact_about_names_case_and_folding() -> None:
    message = (
        b"received: lower case\r\n"
        b"RECEIVED : obsolete space before the colon\r\n"
        b"Received-SPF: pass\r\n"  # another field
        b"X-Received: by somewhere\r\n"  # another field
        b"Received: from a\r\n\tReceived: continuation, not a field\r\n\tby b\r\n"
        b"Subject: Received: in a value\r\n"
        b"\r\n"
        b"Received: body\r\n"
    )
    assert count_fields(message, "Received") == 3


def test_has_fields_agrees_with_count_fields() -> None:
    spf = b"Received-SPF: pass\r\n" * 5  # raises the quick bound, not the count
    for n in range(5):
        message = spf + hops(n, body=b"Received: body\r\n" * 9)
        for at_least in range(8):
            assert has_fields(message, "Received", at_least) is (n >= at_least), (n, at_least)
    assert has_fields(b"RECEIVED : a\r\n\r\n", "Received", 1)


def test_hop_limit_refuses_a_message_with_limit_received_fields() -> None:
    check = HopLimit(50)
    assert check.at_message(SMTP, MAIL, hops(49)) is CONTINUE  # 50 with our own: allowed
    refused = check.at_message(SMTP, MAIL, hops(50))
    assert refused.reply == TOO_MANY_HOPS
    assert (TOO_MANY_HOPS.code, TOO_MANY_HOPS.enhanced) == (554, "5.4.6")
    assert "Too many hops" in TOO_MANY_HOPS.text
    assert check.at_message(SMTP, MAIL, hops(400)).reply == TOO_MANY_HOPS


def test_hop_limit_applies_to_trusted_and_authenticated_clients_too() -> None:
    # A loop between MTAs comes from trusted peers: no one is exempt.
    check = HopLimit(3)
    for submission in (SMTP, TRUSTED, AUTHENTICATED):
        assert check.at_message(submission, MAIL, hops(3)).reply == TOO_MANY_HOPS


def test_hop_limit_ignores_received_lines_in_the_body() -> None:
    check = HopLimit(3)
    assert check.at_message(SMTP, MAIL, hops(1, body=b"Received: x\r\n" * 10_000)) is CONTINUE


# -- address literals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "literal"),
    [
        ("x@[127.0.0.1]", True),
        ("x@[IPv6:::1]", True),
        ('"a@[b]"@example.test', False),
        ("x@example.test", False),
        ("", False),
        ("postmaster", False),
    ],
)
def test_is_address_literal(address: str, literal: bool) -> None:
    assert is_address_literal(address) is literal


def test_address_literal_sender_refused_from_an_untrusted_client() -> None:
    check = AddressLiterals()
    refused = check.at_mail(SMTP, "x@[127.0.0.1]")
    assert refused.reply == LITERAL_SENDER
    assert (LITERAL_SENDER.code, LITERAL_SENDER.enhanced) == (550, "5.7.1")
    assert "literal" in LITERAL_SENDER.text
    assert check.at_mail(SMTP, "x@[IPv6:::1]").reply == LITERAL_SENDER
    assert check.at_mail(SMTP, "x@example.test") is CONTINUE
    assert check.at_mail(SMTP, "") is CONTINUE  # the null sender


def test_address_literal_recipient_refused_from_an_untrusted_client() -> None:
    check = AddressLiterals()
    refused = check.at_rcpt(SMTP, "s@a.test", "x@[192.0.2.7]")
    assert refused.reply == LITERAL_RECIPIENT
    assert (LITERAL_RECIPIENT.code, LITERAL_RECIPIENT.enhanced) == (550, "5.7.1")
    assert check.at_rcpt(SMTP, "s@a.test", "x@b.test") is CONTINUE


def test_address_literals_from_trusted_or_authenticated_clients() -> None:
    check = AddressLiterals()
    for submission in (TRUSTED, AUTHENTICATED):
        assert check.at_mail(submission, "x@[127.0.0.1]") is CONTINUE
        assert check.at_rcpt(submission, "x@[127.0.0.1]", "y@[192.0.2.7]") is CONTINUE


def test_address_literals_on_a_listener_that_allows_them() -> None:
    check = AddressLiterals([SMTP.listener])
    assert check.at_mail(SMTP, "x@[127.0.0.1]") is CONTINUE
    assert check.at_rcpt(SMTP, "x@[127.0.0.1]", "y@[192.0.2.7]") is CONTINUE
    other = replace(SMTP, listener="192.0.2.1:25")
    assert check.at_mail(other, "x@[127.0.0.1]").reply == LITERAL_SENDER


# -- wired from the config -----------------------------------------------------------------


@pytest.fixture
def _pinned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "fqdn.example.test")
    monkeypatch.chdir(tmp_path)


def parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text), "t.toml")


def pipeline(config: Config) -> IntakePipeline:
    return IntakePipeline(intake_checks(config, None, UserRateLimiter()))


@pytest.mark.usefixtures("_pinned")
def test_defaults_hop_limit_50_and_no_address_literals() -> None:
    config = parse('[[listener]]\naddress = "127.0.0.1:25"\n')
    assert config.server.max_received_headers == 50
    assert config.listeners[0].allow_address_literals is False
    checks = pipeline(config)
    client = replace(SMTP, listener="127.0.0.1:25")
    assert now(checks.at_mail(client, "x@[127.0.0.1]")).reply == LITERAL_SENDER
    assert now(checks.at_rcpt(client, "s@a.test", "x@[127.0.0.1]")).reply == LITERAL_RECIPIENT
    assert now(checks.at_message(client, MAIL, hops(49))) is CONTINUE
    assert now(checks.at_message(client, MAIL, hops(50))).reply == TOO_MANY_HOPS


@pytest.mark.usefixtures("_pinned")
def test_configured_hop_limit_and_listener_allowing_literals() -> None:
    config = parse(
        """
        [server]
        max-received-headers = 5
        [[listener]]
        address = "127.0.0.1:25"
        [[listener]]
        address = "[::1]:2525"
        allow-address-literals = true
        """
    )
    checks = pipeline(config)
    strict = replace(SMTP, listener="127.0.0.1:25")
    lenient = replace(SMTP, listener="[::1]:2525")
    assert now(checks.at_mail(strict, "x@[127.0.0.1]")).reply == LITERAL_SENDER
    assert now(checks.at_mail(lenient, "x@[127.0.0.1]")) is CONTINUE
    assert now(checks.at_message(strict, MAIL, hops(4))) is CONTINUE
    assert now(checks.at_message(strict, MAIL, hops(5))).reply == TOO_MANY_HOPS


@pytest.mark.usefixtures("_pinned")
def test_hop_limit_must_be_positive() -> None:
    with pytest.raises(ConfigError) as info:
        parse("[server]\nmax-received-headers = 0\n")
    assert "server.max-received-headers" in str(info.value)


@pytest.mark.usefixtures("_pinned")
@pytest.mark.parametrize("address", ["127.0.0.1:25", "[::1]:2525", "0.0.0.0:25", "[::]:587"])
def test_listener_name_matches_the_sessions(address: str) -> None:
    # AddressLiterals finds the listener by the name the SMTP session gives it.
    [settings] = parse(f'[[listener]]\naddress = "{address}"\n').listeners
    assert settings.name == listener_name(settings) == address
