"""The suppression list shared by the nodes: every change published, every node applying it.

Lookups stay local (each node's SQLite list and its in-memory filter). With ``[cluster]``
every add and removal made on a node (CLI, API, automatic additions from bounces and
complaints, unsubscribes) is also written to the list file's journal; the daemon's
cluster round (every 0.5 s) appends the journal to one Redis stream (``XADD`` with
``MAXLEN ~`` :data:`STREAM_MAXLEN`) and deletes what it published, then reads the stream
from the last entry it applied (kept in the list file, so a restart continues there) and
applies the other nodes' changes in stream order (idempotent). A node that was down
catches up from the stream; one that fell further behind than the stream keeps (it was
trimmed past its position) logs it once: import the list from another node then.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.typing import EncodableT, FieldT

from outrider.cluster.client import ClusterClient
from outrider.suppression.store import Change, SuppressionStore

__all__ = ["STREAM_MAXLEN", "SuppressionSync"]

log = logging.getLogger("outrider.cluster")

STREAM_MAXLEN = 1_000_000  # entries kept (about; trimmed by whole nodes of the stream)
BATCH = 1000  # changes per Redis round trip
ROUNDS = 20  # batches read per cluster round at most (catching up is spread over rounds)


def _id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms or 0), int(seq or 0)


class SuppressionSync:
    def __init__(self, client: ClusterClient, store: SuppressionStore) -> None:
        self.client = client
        self.store = store
        self.stream = client.key("suppression")
        self.last_id = store.meta("stream-id")  # None: never read, start at the beginning
        self.checked_gap = False
        self.published = 0
        self.applied = 0

    async def round(self) -> None:
        if not self.client.up:
            return
        if await self.publish():
            await self.pull()

    async def publish(self) -> bool:
        """The journal to the stream; False when Redis failed (kept for next time)."""
        while True:
            changes = self.store.journal_after(0, BATCH)
            if not changes:
                return True
            pipe = self.client.redis.pipeline(transaction=False)
            for change in changes:
                pipe.xadd(self.stream, self._fields(change), maxlen=STREAM_MAXLEN, approximate=True)
            if await self.client.call(pipe.execute()) is None:
                return False
            self.store.journal_done(changes[-1].seq)
            self.published += len(changes)
            if len(changes) < BATCH:
                return True

    def _fields(self, change: Change) -> dict[FieldT, EncodableT]:
        fields: dict[FieldT, EncodableT] = {
            "op": change.op,
            "a": change.address,
            "node": self.client.node,
        }
        if change.scope is not None:
            fields["s"] = change.scope
        if change.op == "a":
            fields.update(r=change.reason, t=repr(change.added), src=change.source)
        return fields

    async def pull(self) -> None:
        if not self.checked_gap:
            await self._check_gap()
        last = self.last_id or "0"
        for _ in range(ROUNDS):
            answer = await self.client.call(
                self.client.redis.xread({self.stream: last}, count=BATCH)
            )
            if not answer:
                break
            entries = answer[0][1]
            changes = [
                change
                for entry_id, fields in entries
                if fields.get("node") != self.client.node
                and (change := _change(entry_id, fields)) is not None
            ]
            self.store.apply_remote(changes)
            self.applied += len(changes)
            last = entries[-1][0]
            self.store.set_meta("stream-id", last)
            self.last_id = last
            if len(entries) < BATCH:
                break

    async def _check_gap(self) -> None:
        """Log once when the stream was trimmed past this node's position."""
        first = await self.client.call(self.client.redis.xrange(self.stream, count=1))
        if first is None:
            return
        self.checked_gap = True
        if first and self.last_id is not None and _id(first[0][0]) > _id(self.last_id):
            log.warning(
                "cluster: this node missed suppression list changes (the shared stream was "
                "trimmed past %s); import the list from another node",
                self.last_id,
            )

    def status(self) -> dict[str, Any]:
        return {"published": self.published, "applied": self.applied, "position": self.last_id}


def _change(entry_id: str, fields: dict[str, str]) -> Change | None:
    op, address = fields.get("op"), fields.get("a")
    if op not in ("a", "r") or not address:
        return None
    scope = fields.get("s")
    if op == "a":
        if scope is None:
            return None
        try:
            added = float(fields.get("t", "0"))
        except ValueError:
            added = 0.0
        return Change(
            0, "a", scope, address, fields.get("r", "manual"), added, fields.get("src", "")
        )
    return Change(0, "r", scope, address)
