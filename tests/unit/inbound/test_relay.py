from __future__ import annotations

import ipaddress

import pytest

from outrider.inbound.relay import client_may_relay, recipient_domain, relay_allowed

NETS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))


@pytest.mark.parametrize(
    ("ip", "trusted"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::ffff:127.0.0.1", True),
        ("2001:db8::5", True),
        ("10.0.0.1", False),
        ("::1", False),
        ("not-an-ip", False),
        ("", False),
    ],
)
def test_client_may_relay(ip: str, trusted: bool) -> None:
    assert client_may_relay(ip, NETS) is trusted


@pytest.mark.parametrize(
    ("rcpt", "allowed"),
    [
        ("u@example.org", True),
        ("u@EXAMPLE.ORG", True),
        ("u@example.org.", True),
        ("u@outside.test", False),
        ("u@sub.example.org", False),
        ("postmaster", False),
        ("u@[127.0.0.1]", False),
        ('"u@example.org"@outside.test', False),
    ],
)
def test_relay_for_untrusted_client(rcpt: str, allowed: bool) -> None:
    assert (
        relay_allowed(client_trusted=False, recipient=rcpt, relay_domains={"example.org"})
        is allowed
    )


def test_trusted_client_relays_anywhere() -> None:
    assert relay_allowed(client_trusted=True, recipient="u@outside.test", relay_domains=())


def test_recipient_domain() -> None:
    assert recipient_domain("a@B.Example.") == "b.example"
    assert recipient_domain("postmaster") == ""
