"""Cluster-wide operator state: pauses, job pauses, disabled source IPs and backoff mode.

Every change made on a node (``outrider pause queue``, a matched 421 pattern entering
backoff, ``disable-source``, a ``disable-source-ip`` pattern) is written to one Redis
hash, field ``KIND:NAME``, value ``{on, v, at, node}``, and bumps a version counter.
Every node asks for the version every :data:`POLL` seconds (one GET) and, when it
moved, reads the hash and applies what changed through the same operator calls, so the
local state and its persistence (``control.json``) stay exactly as on a single node.

Conflicts: the newest change wins (``at``, the writer's wall clock; a tie goes to the
greater node name), decided inside Redis by ``scripts.SET_STATE`` and by :func:`newer` on
each node. A node keeps the stamp of every setting's last change in ``control.json``;
changes made while Redis is away are kept as pending and written when it is back, and
when Redis lost its data (the version key is gone) every node writes its stamps again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from outrider.cluster.client import ClusterClient
from outrider.cluster.suppression_sync import SuppressionSync
from outrider.cluster.view import STATS_EVERY, RateSampler

if TYPE_CHECKING:
    from outrider.queue.operator import Operator

__all__ = ["POLL", "SharedControl", "Stamp", "newer"]

log = logging.getLogger("outrider.cluster")

POLL = 0.5  # seconds between version checks: a change is seen everywhere within ~0.5 s
KINDS = ("queue", "job", "ip", "backoff", "source")


@dataclass(frozen=True, slots=True)
class Stamp:
    """One setting's last change: ``queue:example.org`` paused at ``at`` by ``node``."""

    kind: str
    name: str
    on: bool
    value: float  # backoff: when entered; source: disabled until; else 0
    at: float
    node: str

    @property
    def field(self) -> str:
        return f"{self.kind}:{self.name}"

    def to_json(self) -> str:
        return json.dumps(
            {"on": self.on, "v": self.value, "at": self.at, "node": self.node}, sort_keys=True
        )

    def as_list(self) -> list[object]:
        return [self.on, self.value, self.at, self.node]

    @classmethod
    def parse(cls, field: str, raw: str) -> Stamp | None:
        """From the Redis hash; None for anything malformed (another version's data)."""
        kind, sep, name = field.partition(":")
        try:
            data = json.loads(raw)
            stamp = cls(kind, name, bool(data["on"]), float(data["v"]), float(data["at"]),
                        str(data["node"]))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None
        return stamp if sep and kind in KINDS and name else None

    @classmethod
    def of_list(cls, field: str, data: list[object]) -> Stamp | None:
        """From ``control.json``'s ``stamps``."""
        kind, _, name = field.partition(":")
        try:
            on, value, at, node = data
            return cls(kind, name, bool(on), float(value), float(at), str(node))  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return None


def newer(candidate: Stamp, current: Stamp | None) -> bool:
    """Last writer wins: later ``at``, a tie to the greater node name (pure)."""
    if current is None:
        return True
    return (candidate.at, candidate.node) > (current.at, current.node)


class SharedControl:
    """Publishes this node's operator-state changes and applies the other nodes'."""

    def __init__(
        self, client: ClusterClient, operator: Operator, clock: Callable[[], float]
    ) -> None:
        self.client = client
        self.operator = operator
        self.ctx = operator.ctx
        self.clock = clock
        self.hash = client.key("state")
        self.version_key = client.key("state", "version")
        self.pending: dict[str, Stamp] = {}
        self.seen: str | None = None  # last version read; None: never (push everything)
        self.applying = False
        self.applied = 0  # remote changes applied here
        self._task: asyncio.Task[None] | None = None
        self.sampler = RateSampler()
        # [cluster] with a suppression list: its changes go through the same rounds
        self.suppression: SuppressionSync | None = None
        self._next_stats = 0.0

    def stamps(self) -> dict[str, Stamp]:
        found = {}
        for field, data in self.ctx.control.stamps.items():
            stamp = Stamp.of_list(field, data)
            if stamp is not None:
                found[field] = stamp
        return found

    # -- this node's changes ---------------------------------------------------------------
    def share(self, kind: str, name: str, on: bool, value: float) -> None:
        """The Context's hook: record and queue a change made here (not one being applied)."""
        if self.applying:
            return
        stamp = Stamp(kind, name, on, value, self.clock(), self.client.node)
        self.ctx.control.stamps[stamp.field] = stamp.as_list()
        self.pending[stamp.field] = stamp
        if self._task is not None:  # write it now rather than at the next poll
            self.ctx.spawn(self._push_now(), "cluster-share")

    async def _push_now(self) -> None:
        await self._push_pending()

    async def _push_pending(self) -> bool:
        for field, stamp in list(self.pending.items()):
            if not await self._write(stamp):
                return False
            if self.pending.get(field) is stamp:
                del self.pending[field]
        return True

    async def _write(self, stamp: Stamp) -> bool:
        args = [stamp.field, stamp.to_json(), repr(stamp.at), stamp.node]
        answer = await self.client.run("SET_STATE", [self.hash, self.version_key], args)
        return answer is not None

    # -- the other nodes' changes ----------------------------------------------------------
    async def poll(self) -> None:
        """One round: write what is pending, then read the state if its version moved."""
        if not self.client.up:
            return
        if not await self._push_pending():
            return
        version = await self.client.call(self.client.redis.get(self.version_key))
        if not self.client.up:
            return
        if version is None or self.seen is None:
            # First contact, or Redis lost its data: offer every stamp we know (Redis
            # keeps the newest of each), then read everything.
            for stamp in self.stamps().values():
                if not await self._write(stamp):
                    return
            self.seen = None
            version = await self.client.call(self.client.redis.get(self.version_key))
            if not self.client.up:
                return
        if version is not None and version == self.seen:
            return
        raw = await self.client.call(self.client.redis.hgetall(self.hash))
        if raw is None or not self.client.up:
            return
        self.seen = version
        self.apply_all(raw)

    def apply_all(self, raw: dict[str, str]) -> None:
        local = self.stamps()
        changed = False
        for field, value in raw.items():
            stamp = Stamp.parse(field, value)
            if stamp is None or not newer(stamp, local.get(field)):
                continue
            if field in self.pending and not newer(stamp, self.pending[field]):
                continue
            self.ctx.control.stamps[field] = stamp.as_list()
            changed = True
            if stamp.node != self.client.node:
                self.applied += 1
                try:
                    self.apply(stamp)
                except Exception:  # one bad setting must not stop the others
                    log.exception("cluster: cannot apply %s", field)
        if changed:
            self.ctx.save_control()

    def apply(self, stamp: Stamp) -> None:
        """Make the local state say what ``stamp`` says, through the operator's calls."""
        op = self.operator
        control = self.ctx.control
        self.applying = True
        try:
            log.info(
                "cluster: %s %s %s by node %s",
                stamp.kind, stamp.name, "on" if stamp.on else "off", stamp.node,
            )  # fmt: skip
            if stamp.kind == "queue":
                if stamp.on and stamp.name not in control.paused_queues:
                    op.pause_queue(stamp.name)
                elif not stamp.on and stamp.name in control.paused_queues:
                    op.resume_queue(stamp.name)
            elif stamp.kind == "job":
                if stamp.on and stamp.name not in control.paused_jobs:
                    op.pause_job(stamp.name)
                elif not stamp.on:
                    op.resume_job(stamp.name)
            elif stamp.kind == "ip":
                if stamp.on and stamp.name not in control.disabled_ips:
                    op.disable_source(stamp.name)
                elif not stamp.on:
                    op.enable_source(stamp.name)
            elif stamp.kind == "backoff":
                self._apply_backoff(stamp)
            elif stamp.kind == "source" and stamp.on:
                key, _, vmta = stamp.name.rpartition("/")
                if key and vmta:
                    op.scheduler.shaper.apply_disabled(key, vmta, stamp.value)
        finally:
            self.applying = False

    def _apply_backoff(self, stamp: Stamp) -> None:
        control = self.ctx.control
        matched = self.operator.set_mode(
            stamp.name, "backoff" if stamp.on else "normal", reason="cluster"
        )
        if not matched:  # no such queue here yet: it starts in that mode when it comes
            if stamp.on:
                control.backoff[stamp.name] = stamp.value or stamp.at
            else:
                control.backoff.pop(stamp.name, None)
            self.ctx.save_control()

    # -- the loop --------------------------------------------------------------------------
    def start(self) -> None:
        self.ctx.share = self.share
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cluster-state")

    async def publish_stats(self) -> None:
        """This node's per-queue rate and connections, for ``show cluster`` (a hash with
        a TTL: a dead node's figures go with it)."""
        now = self.clock()
        if not self.client.up or now < self._next_stats:
            return
        self._next_stats = now + STATS_EVERY
        figures = self.sampler.sample(now, list(self.operator.scheduler.queues.values()))
        key = self.client.key("stats", self.client.node)
        pipe = self.client.redis.pipeline(transaction=True)
        pipe.delete(key)
        if figures:
            pipe.hset(key, mapping={q: json.dumps(f) for q, f in figures.items()})
            pipe.pexpire(key, int(STATS_EVERY * 5000))
        await self.client.call(pipe.execute())

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
                if self.suppression is not None:
                    await self.suppression.round()
                await self.publish_stats()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster: shared state round failed")
            await asyncio.sleep(POLL)

    async def stop(self) -> None:
        self.ctx.share = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "pending": len(self.pending),
            "applied": self.applied,
            "version": self.seen,
        }
        if self.suppression is not None:
            found["suppression"] = self.suppression.status()
        return found
