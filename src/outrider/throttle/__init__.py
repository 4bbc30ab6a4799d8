"""Throttles: the state behind every limit (rates, concurrent counts, failure counts, blocks).

:class:`Throttle` is the interface, awaitable so that a shared implementation (state in
Redis, common to receiver processes and machines) can come later without touching the
callers; :class:`LocalThrottle` keeps the state in this process.

The policies (:class:`outrider.inbound.limits.ConnectionGate`,
:class:`outrider.auth.throttle.AuthThrottle`, :class:`outrider.auth.rates.UserRateLimiter`)
hold a throttle and make the decisions: which key, which limit from the config, which
reply. They follow one pattern, *sync when local, awaitable when shared*:

* ``policy.local`` is True when the throttle is a :class:`LocalThrottle`;
* the plain decision methods (``admit``, ``allow``, ``is_blocked`` ...) answer at once
  through the throttle's ``*_now`` twins, and refuse (TypeError) a shared throttle;
* each has an ``*_async`` twin that awaits the :class:`Throttle` interface and works
  with any implementation.

Synchronous callers on a hot path branch once: ``if gate.local: refusal =
gate.admit(ip, now)``, else they run the async twin in a task and continue there
(reading paused); :func:`in_background` covers calls whose answer nobody waits for.
Code already in a coroutine simply awaits the twin.
"""

from outrider.throttle.background import in_background
from outrider.throttle.base import Throttle
from outrider.throttle.local import LocalThrottle
from outrider.throttle.rate import RateLimit

__all__ = ["LocalThrottle", "RateLimit", "Throttle", "in_background"]
