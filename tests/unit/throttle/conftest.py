"""The semantics suite runs against every Throttle implementation listed here.

A shared implementation (e.g. Redis) joins by adding a factory to ``IMPLEMENTATIONS``;
every test in this package that takes the ``throttle`` fixture then runs against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from outrider.throttle import LocalThrottle, Throttle
from tests.support.throttle import SharedStandIn

IMPLEMENTATIONS: dict[str, Callable[[], Throttle]] = {
    "local": LocalThrottle,
    "shared-stand-in": SharedStandIn,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def throttle(request: pytest.FixtureRequest) -> Throttle:
    return IMPLEMENTATIONS[request.param]()


@dataclass
class FakeClock:
    """Seconds that move only when a test says so."""

    now: float = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
