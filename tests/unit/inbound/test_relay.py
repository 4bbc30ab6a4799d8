from __future__ import annotations

import ipaddress

import pytest

from outrider.inbound.relay import (
    client_may_relay,
    normalize_domain,
    normalize_domains,
    recipient_domain,
    relay_allowed,
)

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
        ("2001:db8::5%eth0", True),  # a zone index is not part of the address
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
        ('"u@outside.test"@example.org', True),  # mail for example.org: the local part is opaque
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
    assert recipient_domain('"u@outside.test"@example.org') == "example.org"
    assert recipient_domain("postmaster") == ""
    # only what follows the last "@" counts, whatever (if anything) comes before it
    assert recipient_domain("@example.org") == "example.org"


@pytest.mark.parametrize(
    ("domain", "normalized"),
    [
        ("Relay.Test.", "relay.test"),
        ("BÜCHER.test", "xn--bcher-kva.test"),
        ("xn--bcher-kva.TEST", "xn--bcher-kva.test"),
        ("bad..ü", ""),
    ],
)
def test_normalize_domain(domain: str, normalized: str) -> None:
    assert normalize_domain(domain) == normalized


def test_idn_and_literals_in_relay_check() -> None:
    domains = normalize_domains(["bücher.test", "relay.test"])
    assert relay_allowed(client_trusted=False, recipient="u@BÜCHER.test", relay_domains=domains)
    assert relay_allowed(
        client_trusted=False, recipient="u@xn--bcher-kva.test", relay_domains=domains
    )
    assert not relay_allowed(client_trusted=False, recipient="u@[1.2.3.4]", relay_domains=domains)
