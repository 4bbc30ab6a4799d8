"""One throttle for every receiver process: the state lives in the delivery process.

With ``receiver-processes = N``, limits kept per process (the connection gate's
per-client count and rate, failed-AUTH counts and blocks, per-user message rates) would
be N times looser, because the kernel spreads one client's connections over all
receivers. :class:`ThrottleServer` runs in the delivery process over a
:class:`~outrider.throttle.LocalThrottle`; each receiver reaches it through a
:class:`RemoteThrottle`, which implements the :class:`~outrider.throttle.Throttle`
interface over a Unix socket (newline-delimited JSON; one request, one reply, replies
matched by id so calls from many sessions share the channel).

The rules of the interface hold across the channel: each call runs atomically in the
server's event loop; counts are attributed to the channel that took them and given
back when it closes (a receiver that dies leaves none behind); and trouble never stops
mail: when the server cannot be reached or is slower than :data:`CALL_TIMEOUT`, the
client answers as for a fresh key (admitted, not blocked, no events), logs the outage
once, and reconnects in the background. ``now`` is ``time.monotonic()``, one clock for
every process on the machine (Linux's CLOCK_MONOTONIC is system-wide).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import Counter
from typing import Any

from outrider.throttle.local import LocalThrottle
from outrider.throttle.rate import RateLimit

__all__ = ["CALL_TIMEOUT", "RemoteThrottle", "ThrottleServer"]

log = logging.getLogger("outrider.throttle")

CALL_TIMEOUT = 1.0  # seconds; slower answers count as an outage (the call is answered as fresh)
MAX_LINE = 64 * 1024  # a request or reply line; keys are short


def _limit(interval: float, burst: int) -> RateLimit:
    return RateLimit(float(interval), int(burst))


class ThrottleServer:
    """Runs in the delivery process; answers :class:`RemoteThrottle` calls."""

    def __init__(self, path: str, throttle: LocalThrottle | None = None) -> None:
        self.path = path
        self.throttle = throttle if throttle is not None else LocalThrottle()
        self.server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.calls = 0

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by a crash
        old = os.umask(0o177)  # only the daemon's user may take part in its limits
        try:
            self.server = await asyncio.start_unix_server(self._client, path=self.path)
        finally:
            os.umask(old)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._stopping:
            writer.close()
            return
        self._clients.add(task)
        held: Counter[str] = Counter()  # counts this channel took
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    log.error("throttle: oversized request; dropping channel")
                    return
                try:
                    call_id, op, *args = json.loads(line)
                    result = self._call(op, args, held)
                except Exception as exc:
                    log.error("throttle: bad request %.200r: %s", line, exc)
                    return
                writer.write(json.dumps([call_id, result]).encode() + b"\n")
        except asyncio.CancelledError:
            return  # stopping
        finally:
            self._clients.discard(task)
            local = self.throttle
            for key, count in held.items():
                for _ in range(count):
                    local.release_now(key)
            writer.close()

    def _call(self, op: str, args: list[Any], held: Counter[str]) -> Any:
        self.calls += 1
        t = self.throttle
        if op == "rate":
            key, interval, burst, now = args
            return t.rate_now(key, _limit(interval, burst), now)
        if op == "peek_rate":
            key, interval, burst, now = args
            return t.peek_rate_now(key, _limit(interval, burst), now)
        if op == "acquire":
            key, limit = args
            ok = t.acquire_now(key, limit)
            if ok:
                held[key] += 1
            return ok
        if op == "acquire_within_rate":
            key, limit, rate_key, interval, burst, now = args
            code = t.acquire_within_rate_now(key, limit, rate_key, _limit(interval, burst), now)
            if code == 0:
                held[key] += 1
            return code
        if op == "release":
            (key,) = args
            if held[key] <= 0:
                return False  # not this channel's to give back
            held[key] -= 1
            if not held[key]:
                del held[key]
            return t.release_now(key)
        if op == "held":
            return t.held_now(args[0])
        if op == "add_event":
            key, window, now = args
            return t.add_event_now(key, window, now)
        if op == "count":
            key, window, now = args
            return t.count_now(key, window, now)
        if op == "clear_events":
            t.clear_events_now(args[0])
            return None
        if op == "block":
            key, until, now = args
            t.block_now(key, until, now)
            return None
        if op == "blocked_until":
            key, now = args
            return t.blocked_until_now(key, now)
        raise ValueError(f"unknown operation {op!r}")

    async def stop(self) -> None:
        self._stopping = True
        if self.server is not None:
            self.server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        for task in list(self._clients):
            task.cancel()
        for task in list(self._clients):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class RemoteThrottle:
    """A :class:`~outrider.throttle.Throttle` whose state is a :class:`ThrottleServer`'s."""

    RECONNECT_FIRST = 0.05
    RECONNECT_MAX = 2.0

    def __init__(self, path: str, *, timeout: float = CALL_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._reading: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False
        self._outage_logged = False
        self.outages = 0  # calls answered as fresh because the server was unavailable

    async def connect(self) -> None:
        """First connection (the daemon has started the server); raises OSError."""
        reader, writer = await asyncio.open_unix_connection(self.path, limit=MAX_LINE)
        self._attach(reader, writer)

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    def _attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._reading = asyncio.get_running_loop().create_task(
            self._read_replies(reader), name="throttle-replies"
        )
        if self._outage_logged:
            log.warning("throttle: shared limits available again")
            self._outage_logged = False

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readuntil(b"\n")
                call_id, result = json.loads(line)
                future = self._pending.pop(call_id, None)
                if future is not None and not future.done():
                    future.set_result(result)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except ValueError as exc:
            log.error("throttle: bad reply: %s", exc)
        self._lost()

    def _lost(self) -> None:
        """The channel is gone: answer every waiting call as fresh, reconnect."""
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("throttle channel lost"))
        self._pending.clear()
        if not self._closed and (self._connecting is None or self._connecting.done()):
            self._connecting = asyncio.get_running_loop().create_task(
                self._reconnect(), name="throttle-reconnect"
            )

    async def _reconnect(self) -> None:
        pause = self.RECONNECT_FIRST
        while not self._closed:
            await asyncio.sleep(pause)
            try:
                reader, writer = await asyncio.open_unix_connection(self.path, limit=MAX_LINE)
            except OSError:
                pause = min(pause * 2, self.RECONNECT_MAX)
                continue
            self._attach(reader, writer)
            return

    async def _call(self, fresh: Any, op: str, *args: Any) -> Any:
        """The server's answer, or ``fresh`` when it cannot give one in time."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return self._outage(fresh, "not connected")
        self._next_id += 1
        call_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        writer.write(json.dumps([call_id, op, *args]).encode() + b"\n")
        try:
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            self._pending.pop(call_id, None)
            return self._outage(fresh, f"no answer within {self.timeout}s")
        except ConnectionError:
            return self._outage(fresh, "channel lost")

    def _outage(self, fresh: Any, why: str) -> Any:
        self.outages += 1
        if not self._outage_logged:
            self._outage_logged = True
            log.error(
                "throttle: shared limits unavailable (%s); this process admits meanwhile", why
            )
        if self._writer is None and not self._closed:
            self._lost()  # make sure a reconnect is under way
        return fresh

    # -- the Throttle interface ---------------------------------------------------------
    async def rate(self, key: str, limit: RateLimit, now: float) -> float:
        if limit.interval == 0.0:
            return 0.0
        result = await self._call(0.0, "rate", key, limit.interval, limit.burst, now)
        return float(result)

    async def peek_rate(self, key: str, limit: RateLimit, now: float) -> float:
        if limit.interval == 0.0:
            return 0.0
        result = await self._call(0.0, "peek_rate", key, limit.interval, limit.burst, now)
        return float(result)

    async def acquire(self, key: str, limit: int | None) -> bool:
        return bool(await self._call(True, "acquire", key, limit))

    async def acquire_within_rate(
        self, key: str, limit: int | None, rate_key: str, rate: RateLimit, now: float
    ) -> int:
        args = (key, limit, rate_key, rate.interval, rate.burst, now)
        return int(await self._call(0, "acquire_within_rate", *args))

    async def release(self, key: str) -> bool:
        return bool(await self._call(False, "release", key))

    async def held(self, key: str) -> int:
        return int(await self._call(0, "held", key))

    async def add_event(self, key: str, window: float, now: float) -> int:
        return int(await self._call(1, "add_event", key, window, now))

    async def count(self, key: str, window: float, now: float) -> int:
        return int(await self._call(0, "count", key, window, now))

    async def clear_events(self, key: str) -> None:
        await self._call(None, "clear_events", key)

    async def block(self, key: str, until: float, now: float) -> None:
        await self._call(None, "block", key, until, now)

    async def blocked_until(self, key: str, now: float) -> float | None:
        result = await self._call(None, "blocked_until", key, now)
        return None if result is None else float(result)

    async def close(self) -> None:
        self._closed = True
        for task in (self._connecting, self._reading):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._writer = None
