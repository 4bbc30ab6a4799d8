"""The signature and the retry schedule (pure functions)."""

from __future__ import annotations

import hashlib
import hmac

from outrider.webhooks import signing


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"k", b"1700000000.[]", hashlib.sha256).hexdigest()
    assert signing.signature(b"k", 1700000000, b"[]") == f"sha256={expected}"
    assert signing.verify(b"k", "1700000000", b"[]", f"sha256={expected}")
    assert not signing.verify(b"k", "1700000001", b"[]", f"sha256={expected}")
    assert not signing.verify(b"other", "1700000000", b"[]", f"sha256={expected}")
    assert not signing.verify(b"k", "nope", b"[]", f"sha256={expected}")


def test_backoff_doubles_from_one_second_to_five_minutes_with_jitter() -> None:
    full = [signing.backoff(n, rand=0.999999) for n in range(1, 12)]
    assert [round(x) for x in full[:5]] == [1, 2, 4, 8, 16]
    assert max(full) <= 300 and round(full[-1]) == 300
    assert signing.backoff(1, rand=0.0) == 0.5  # jitter: half to all of the step
    assert signing.backoff(20, rand=0.0) == 150


def test_every_non_2xx_is_retried_and_client_errors_are_told_apart() -> None:
    assert not signing.retryable(204)
    assert all(signing.retryable(s) for s in (400, 401, 404, 408, 429, 500, 503))
    assert signing.client_error(401) and not signing.client_error(429)
    assert not signing.client_error(408) and not signing.client_error(500)
