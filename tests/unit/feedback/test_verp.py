from __future__ import annotations

import pytest

from outrider.feedback.step import VerpRewriter
from outrider.feedback.verp import MAX_LOCAL, VerpError, decode, encode
from outrider.message.envelope import Envelope, Recipient

KEY = b"k" * 32


def test_round_trip_with_job() -> None:
    address = encode(KEY, "bounces@bounce.example.com", "ann@example.org", "spring")
    assert address is not None
    local, _, domain = address.rpartition("@")
    assert domain == "bounce.example.com"
    assert local.startswith("bounces+")
    assert len(local) <= MAX_LOCAL
    assert local == local.lower()  # base32, lower case: survives case folding
    verp = decode(KEY, address)
    assert (verp.base, verp.recipient, verp.job_id) == (
        "bounces@bounce.example.com",
        "ann@example.org",
        "spring",
    )


def test_case_changed_by_a_remote_mta_still_decodes() -> None:
    address = encode(KEY, "b@bounce.example.com", "ann@example.org")
    assert address is not None
    local, _, domain = address.rpartition("@")
    assert decode(KEY, f"{local.upper()}@{domain}").recipient == "ann@example.org"


def test_job_dropped_when_it_does_not_fit_then_no_verp() -> None:
    address = encode(KEY, "b@bounce.example.com", "ann@example.org", "j" * 40)
    assert address is not None
    assert decode(KEY, address).job_id == ""
    assert encode(KEY, "b@bounce.example.com", "a" * 40 + "@example.org") is None


@pytest.mark.parametrize(
    "address",
    [
        "bounces@bounce.example.com",
        "bounces+@bounce.example.com",
        "bounces+abc@bounce.example.com",
        "bounces+mfrgg-aaaaaa@bounce.example.com",  # wrong MAC
        "+mfrgg-aaaaaa@bounce.example.com",
    ],
)
def test_forged_or_malformed(address: str) -> None:
    with pytest.raises(VerpError):
        decode(KEY, address)


def test_other_key_or_other_base_is_refused() -> None:
    address = encode(KEY, "bounces@bounce.example.com", "ann@example.org")
    assert address is not None
    with pytest.raises(VerpError):
        decode(b"x" * 32, address)
    with pytest.raises(VerpError):
        decode(KEY, address.replace("bounces+", "other+"))


def _envelope(sender: str, *rcpts: str, job: str = "") -> Envelope:
    return Envelope("Q1", sender, [Recipient(r) for r in rcpts], 0.0, job_id=job)


def test_rewriter_single_recipient_only() -> None:
    step = VerpRewriter({"bounce.example.com": KEY})
    one = _envelope("bounces@bounce.example.com", "ann@example.org", job="spring")
    assert step.rewrite(one)
    assert decode(KEY, one.sender).job_id == "spring"
    two = _envelope("bounces@bounce.example.com", "ann@example.org", "bob@example.org")
    assert not step.rewrite(two)
    assert two.sender == "bounces@bounce.example.com"
    other = _envelope("news@news.example.com", "ann@example.org")
    assert not step.rewrite(other)
    null = _envelope("", "ann@example.org")
    assert not step.rewrite(null)


def test_rewriter_does_not_rewrite_twice() -> None:
    step = VerpRewriter({"bounce.example.com": KEY})
    env = _envelope("bounces@bounce.example.com", "ann@example.org")
    step.rewrite(env)
    first = env.sender
    assert not step.rewrite(env)
    assert env.sender == first
