"""Build the node's shared throttle from ``[cluster]`` (only called when ``redis`` is set)."""

from __future__ import annotations

from outrider.cluster.client import ClusterClient, ClusterOptions
from outrider.cluster.throttle import RedisThrottle
from outrider.cluster.wall_clock import WallClock
from outrider.config.model import ClusterSettings

__all__ = ["open_auth_throttle", "open_cluster", "options_of"]


def options_of(settings: ClusterSettings, *, register: bool = True) -> ClusterOptions:
    """The client's options; the password is read from ``password-file`` (first line)."""
    assert settings.redis is not None
    password = None
    if settings.password_file is not None:
        lines = settings.password_file.read_text(encoding="utf-8").splitlines()
        password = lines[0].strip() if lines else ""
    return ClusterOptions(
        url=settings.redis,
        node=settings.node_name,
        prefix=settings.key_prefix,
        password=password,
        tls_ca_file=str(settings.tls_ca_file) if settings.tls_ca_file is not None else None,
        lease_time=settings.lease_time,
        timeout=settings.timeout,
        register=register,
    )


async def open_cluster(settings: ClusterSettings) -> RedisThrottle:
    """Connect (bounded by the timeout: an unreachable Redis means fallback, not failure)
    and start the heartbeat and lease renewal."""
    throttle = RedisThrottle(ClusterClient(options_of(settings)))
    await throttle.client.start()
    return throttle


async def open_auth_throttle(settings: ClusterSettings) -> WallClock:
    """A receiver process's own Redis client for failed-AUTH counts (it does not register
    as a node), behind the wall-clock adapter the receivers' monotonic times need."""
    throttle = RedisThrottle(ClusterClient(options_of(settings, register=False)))
    await throttle.client.start()
    return WallClock(throttle)
