"""SRS: forwarded mail's sender rewritten, and bounces to it sent back, never forged."""

from __future__ import annotations

from pathlib import Path

import pytest

from outrider.local.srs import Srs, SrsError, is_srs, load_secret

NOW = 1_795_811_465.0
DAY = 86400.0
SRS = Srs(b"k" * 32, "fwd.example.net")
OTHER = Srs(b"x" * 32, "first.example")


def test_forward_and_back() -> None:
    address = SRS.forward("Alice@Example.com", NOW)
    local, _, domain = address.rpartition("@")
    assert domain == "fwd.example.net"
    assert local.startswith("SRS0=") and local.endswith("=Example.com=Alice")
    assert SRS.reverse(address, NOW) == "Alice@Example.com"
    assert SRS.reverse(address.upper().replace("FWD.EXAMPLE.NET", "fwd.example.net"), NOW) == (
        "ALICE@EXAMPLE.COM"
    )  # hashes compare without case: some MTAs change it


def test_null_and_bare_senders_are_kept() -> None:
    assert SRS.forward("", NOW) == ""
    assert SRS.forward("postmaster", NOW) == "postmaster"


def test_forged_and_expired_addresses_are_refused() -> None:
    address = SRS.forward("alice@example.com", NOW)
    with pytest.raises(SrsError, match="does not match"):
        SRS.reverse(address.replace("alice", "mallory"), NOW)
    with pytest.raises(SrsError, match="does not match"):
        OTHER.reverse(address, NOW)  # another server's key
    assert SRS.reverse(address, NOW + 21 * DAY) == "alice@example.com"
    with pytest.raises(SrsError, match="expired"):
        SRS.reverse(address, NOW + 22 * DAY)
    for bad in ("SRS0=abc@fwd.example.net", "SRS1=x@fwd.example.net", "alice@fwd.example.net"):
        with pytest.raises(SrsError):
            SRS.reverse(bad, NOW)


def test_forwarded_twice_points_back_at_the_first_forwarder() -> None:
    first = OTHER.forward("alice@example.com", NOW)  # SRS0=...@first.example
    second = SRS.forward(first, NOW)
    assert second.startswith("SRS1=") and "=first.example==" in second
    back_to_first = SRS.reverse(second, NOW)
    assert back_to_first == first  # the first forwarder undoes its own rewriting
    assert OTHER.reverse(back_to_first, NOW) == "alice@example.com"
    third = Srs(b"z" * 32, "third.example").forward(second, NOW)
    assert "=first.example==" in third  # still points at the first forwarder
    assert Srs(b"z" * 32, "third.example").reverse(third, NOW) == first


def test_is_srs() -> None:
    assert is_srs("SRS0=a=b=c=d") and is_srs("srs1=x") and not is_srs("srs")


def test_the_secret_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "srs-secret"
    secret = load_secret(path)
    assert len(secret) == 64 and path.stat().st_mode & 0o777 == 0o600
    assert load_secret(path) == secret
    path.write_text("short\n")
    with pytest.raises(ValueError, match="too short"):
        load_secret(path)
