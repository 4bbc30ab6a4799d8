"""The signature of a webhook batch, and the retry schedule: pure functions.

``X-Outrider-Signature: sha256=HEX`` is HMAC-SHA256 over ``TIMESTAMP + "." + BODY``
with the webhook's secret, ``TIMESTAMP`` being the ``X-Outrider-Timestamp`` header
(unix seconds): a receiver that also checks the timestamp is recent cannot be fed an
old batch again by someone who recorded it.
"""

from __future__ import annotations

import hashlib
import hmac
import random

BACKOFF_FIRST = 1.0  # seconds before the first retry
BACKOFF_MAX = 300.0  # the doubling stops at five minutes


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Outrider-Signature`` value."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (and the tests): compare in constant time."""
    try:
        expected = signature(secret, int(timestamp), body)
    except ValueError:
        return False
    return hmac.compare_digest(expected, header)


def backoff(failures: int, rand: float | None = None) -> float:
    """Seconds to wait after ``failures`` (≥ 1) failed attempts in a row: 1 s doubling to
    5 min, then jittered to between half and all of that (``rand`` in [0, 1), random if
    None) so that many webhooks failing together do not retry in step."""
    base = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** max(0, failures - 1))
    r = random.random() if rand is None else rand
    return base * (0.5 + 0.5 * r)


def retryable(status: int) -> bool:
    """Every non-2xx answer is retried (the events stay queued). A 4xx other than 408
    and 429 usually means the receiver or its configuration is wrong (a bad URL, a
    rejected signature); dropping the events would lose them for good while the fix is
    one config change away, so they are retried too, and logged as such."""
    return not 200 <= status < 300


def client_error(status: int) -> bool:
    """A 4xx that is not about load: worth a warning naming the likely misconfiguration."""
    return 400 <= status < 500 and status not in (408, 429)
