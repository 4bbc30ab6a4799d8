"""Several Outrider nodes sharing their shaping state through Redis (``[cluster]``).

* :mod:`~outrider.cluster.scripts`: the Lua scripts, one round trip per decision;
* :mod:`~outrider.cluster.client`: the connection to Redis, every call bounded by the
  timeout, the up/down state and the node registry (heartbeat, live node count);
* :mod:`~outrider.cluster.fallback`: the local limits used while Redis is unreachable
  (the shared limit divided by the last known number of live nodes);
* :mod:`~outrider.cluster.throttle`: :class:`RedisThrottle`, the
  :class:`~outrider.throttle.base.Throttle` over Redis, with connection leases that the
  node renews and batched GCRA reservations for the scheduler.

Nothing here is imported without ``[cluster] redis``: a single node pays nothing.
"""
