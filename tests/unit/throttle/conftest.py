"""The semantics suite runs against every Throttle implementation listed here.

A shared implementation (e.g. Redis) joins by adding a factory to ``IMPLEMENTATIONS``;
every test in this package that takes the ``throttle`` fixture then runs against it.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from outrider.throttle import LocalThrottle, Throttle
from tests.support.redis_server import RedisServer, redis_server, redis_throttle
from tests.support.throttle import SharedStandIn

__all__ = ["redis_server"]
_PREFIXES = itertools.count(1)

IMPLEMENTATIONS: dict[str, Callable[[], Throttle]] = {
    "local": LocalThrottle,
    "shared-stand-in": SharedStandIn,
}


@pytest.fixture(params=[*sorted(IMPLEMENTATIONS), "redis"])
async def throttle(request: pytest.FixtureRequest) -> AsyncIterator[Throttle]:
    if request.param != "redis":
        yield IMPLEMENTATIONS[request.param]()
        return
    # Needs a server, so it is built here rather than in IMPLEMENTATIONS.
    server: RedisServer = request.getfixturevalue("redis_server")
    shared = redis_throttle(server.url, prefix=f"t{next(_PREFIXES)}:")
    yield shared
    await shared.client.redis.aclose()


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
