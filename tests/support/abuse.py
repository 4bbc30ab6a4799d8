"""Hostile SMTP clients for the inbound abuse test and benchmark.

Idle connections, slowloris senders (a command, or a message body, one byte at a time)
and connection bursts. Each client binds its socket to a source address before it
connects, so one machine can play many strangers: every address in 127.0.0.0/8 is a
loopback address, and a daemon whose ``relay-networks`` is ``127.0.0.1/32`` treats all
the others as untrusted clients. A client records what the server answered and when it
hung up; :func:`tally` turns a list of records into the refusal counts the test checks
and the benchmark prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "GREETED",
    "AbuseClient",
    "Attempt",
    "burst",
    "burst_worker",
    "open_many",
    "percentile",
    "source_addresses",
    "tally",
]

GREETED = "220 greeted"
RESET = "reset by server"
NO_REPLY = "closed without a reply"
TIMED_OUT = "no reply (client timeout)"

_READ_LIMIT = 64 * 1024


def source_addresses(count: int, *, first: int = 0) -> list[str]:
    """``count`` distinct untrusted loopback addresses: 127.0.0.2 ... 127.0.0.250, then
    127.0.1.2 ... and so on; ``first`` skips that many (to get addresses no earlier
    phase used, whose per-client counts and rates are fresh)."""
    out: list[str] = []
    for i in range(first, first + count):
        high, low = divmod(i, 249)
        if high > 255:
            raise ValueError("out of loopback source addresses")
        out.append(f"127.0.{high}.{2 + low}")
    return out


def _reply_text(line: bytes, hostname: str) -> str:
    """A reply line as printable text, without the server's host name (so replies from
    different connections count as one)."""
    text = line.decode("ascii", "replace").strip()
    if hostname:
        text = text.replace(f" {hostname} ", " ")
    return text


@dataclass(slots=True)
class Attempt:
    """What one connection saw, in monotonic seconds (comparable across processes)."""

    source: str
    started: float  # before connect()
    first: str = ""  # the server's first reply line, "" when none came
    answered: float | None = None  # when the first reply arrived
    last: str = ""  # the last reply line seen, e.g. the 421 4.4.2 of an idle timeout
    hung_up: float | None = None  # when the server closed the connection (EOF or reset)
    error: str = ""  # connect failure, reset, client-side timeout

    @property
    def greeted(self) -> bool:
        return self.first.startswith("220")

    @property
    def outcome(self) -> str:
        """The connection's fate at connect: greeted, refused with this reply, or the error."""
        if self.greeted:
            return GREETED
        if self.first:
            return self.first
        return self.error or NO_REPLY


class AbuseClient:
    """One attacker connection from ``source``; every method records into :attr:`record`."""

    def __init__(self, host: str, port: int, source: str, *, hostname: str = "") -> None:
        self.host = host
        self.port = port
        self.hostname = hostname  # the daemon's, dropped from recorded reply lines
        self.record = Attempt(source, time.monotonic())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self, timeout: float) -> bool:
        """Connect and read the first reply (the greeting or a refusal); True when greeted.
        Only connect: an mx listener holds an untrusted client's greeting for 0.5 s and
        answers one that talks first with 554, so a client must wait for the 220."""
        rec = self.record
        rec.started = time.monotonic()
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host, self.port, local_addr=(rec.source, 0), limit=_READ_LIMIT
                ),
                timeout,
            )
        except TimeoutError:
            rec.error = "connect timeout (client)"
            return False
        except OSError as exc:
            rec.error = f"connect {_os_error(exc)}"
            return False
        try:
            line = await asyncio.wait_for(self._reply(), timeout)
        except TimeoutError:
            rec.error = TIMED_OUT
            self.close()
            return False
        except OSError as exc:
            rec.error = RESET if _is_reset(exc) else _os_error(exc)
            rec.hung_up = time.monotonic()
            self.close()
            return False
        rec.answered = time.monotonic()
        if not line:
            rec.hung_up = rec.answered
            self.close()
            return False
        rec.first = rec.last = line
        return rec.greeted

    async def command(self, line: bytes, timeout: float) -> str:
        """Send one command line (CRLF added) and return the reply's last line."""
        if self._writer is None:
            raise RuntimeError("not connected")
        self._writer.write(line + b"\r\n")
        await self._writer.drain()
        reply = await asyncio.wait_for(self._reply(), timeout)
        if not reply:
            self.record.hung_up = time.monotonic()
            self.close()
        return reply

    async def hold(self, until: float) -> None:
        """Stay connected and silent until the server hangs up or ``until`` passes."""
        if self._reader is None or self.record.hung_up is not None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._read_to_eof(), max(0.0, until - time.monotonic()))

    async def trickle(self, data: bytes, interval: float, until: float) -> None:
        """Send ``data`` one byte every ``interval`` seconds (slowloris) until the server
        hangs up, the data runs out or ``until`` passes."""
        writer = self._writer
        if writer is None or self.record.hung_up is not None:
            return
        reading = asyncio.create_task(self._read_to_eof())
        try:
            for i in range(len(data)):
                if reading.done() or time.monotonic() >= until:
                    break
                try:
                    writer.write(data[i : i + 1])
                    await writer.drain()
                except OSError:
                    break
                await asyncio.wait(
                    {reading}, timeout=max(0.0, min(interval, until - time.monotonic()))
                )
            if not reading.done():
                await asyncio.wait({reading}, timeout=max(0.0, until - time.monotonic()))
        finally:
            if not reading.done():
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading

    def close(self) -> None:
        """Hang up at once, dropping anything unsent."""
        if self._writer is not None:
            self._writer.transport.abort()
            self._writer = None

    async def _reply(self) -> str:
        """The last line of the next (possibly multi-line) reply; "" at EOF."""
        assert self._reader is not None
        while True:
            line = await self._reader.readline()
            if not line:
                return ""
            text = _reply_text(line, self.hostname)
            self.record.last = text
            if line[3:4] != b"-":
                return text

    async def _read_to_eof(self) -> None:
        assert self._reader is not None
        rec = self.record
        try:
            while line := await self._reader.readline():
                rec.last = _reply_text(line, self.hostname)  # e.g. the 421 4.4.2 of a timeout
        except OSError as exc:
            if not rec.error:
                rec.error = RESET if _is_reset(exc) else _os_error(exc)
        if rec.hung_up is None:
            rec.hung_up = time.monotonic()
        self.close()


def _is_reset(exc: OSError) -> bool:
    return isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError)


def _os_error(exc: OSError) -> str:
    if exc.errno is not None and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    return type(exc).__name__


async def open_many(
    host: str,
    port: int,
    sources: Iterable[str],
    *,
    concurrency: int = 500,
    timeout: float = 30.0,
    hostname: str = "",
) -> list[AbuseClient]:
    """One connection per entry of ``sources`` (repeat an address for several), at most
    ``concurrency`` connecting at a time; returns every client, greeted or not (refused
    ones are already closed by the server)."""
    gate = asyncio.Semaphore(concurrency)
    clients = [AbuseClient(host, port, s, hostname=hostname) for s in sources]

    async def one(client: AbuseClient) -> None:
        async with gate:
            if not await client.connect(timeout):
                client.close()

    await asyncio.gather(*(one(c) for c in clients))
    return clients


async def burst(
    host: str,
    port: int,
    sources: Sequence[str],
    *,
    rate: float,
    seconds: float,
    timeout: float = 15.0,
    hostname: str = "",
    start_at: float | None = None,
) -> tuple[list[Attempt], float]:
    """``rate`` connection attempts per second for ``seconds``, cycling through
    ``sources``, from ``start_at`` (monotonic; default now): each connects, reads the
    first reply and hangs up. Returns the records and the rate at which attempts actually
    started (the client may fall behind). Plain socket calls, no transport or stream per
    attempt, so that one client process can keep up with thousands a second."""
    total = max(1, round(rate * seconds))
    records = [Attempt(sources[i % len(sources)], 0.0) for i in range(total)]
    if start_at is not None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    launched = 0
    while launched < total:
        due = min(total, math.floor((time.monotonic() - start) * rate) + 1)
        for record in records[launched:due]:
            tasks.append(asyncio.create_task(_first_reply(host, port, record, timeout, hostname)))
        launched = due
        if launched < total:
            await asyncio.sleep(0.01)  # launch in 10 ms steps: finer sleeps cost more
    launch_span = max(time.monotonic() - start, 1.0 / rate)
    await asyncio.gather(*tasks)
    return records, total / launch_span


def burst_worker(
    host: str,
    port: int,
    sources: Sequence[str],
    rate: float,
    seconds: float,
    hostname: str,
    start_at: float,
) -> tuple[list[Attempt], float, float]:
    """:func:`burst` in a process of its own (for a process pool): the records, the
    launch rate and the CPU seconds this process used."""
    import resource

    import uvloop

    before = resource.getrusage(resource.RUSAGE_SELF)
    records, achieved = uvloop.run(
        burst(host, port, sources, rate=rate, seconds=seconds, hostname=hostname, start_at=start_at)
    )
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return records, achieved, cpu


_ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close with a reset, no TIME_WAIT


async def _first_reply(host: str, port: int, rec: Attempt, timeout: float, hostname: str) -> None:
    """Connect from ``rec.source``, record the first reply line, hang up."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    rec.started = time.monotonic()
    connected = False
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
        sock.bind((rec.source, 0))
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            connected = True
            data = b""
            while b"\n" not in data:
                chunk = await loop.sock_recv(sock, 512)
                if not chunk:
                    break
                data += chunk
        rec.answered = time.monotonic()
        if data:
            rec.first = rec.last = _reply_text(data.split(b"\n", 1)[0], hostname)
        else:
            rec.hung_up = rec.answered
    except TimeoutError:
        rec.error = TIMED_OUT if connected else "connect timeout (client)"
    except OSError as exc:
        if connected:
            rec.error = RESET if _is_reset(exc) else _os_error(exc)
            rec.hung_up = time.monotonic()
        else:
            rec.error = f"connect {_os_error(exc)}"
    finally:
        sock.close()


def tally(records: Iterable[Attempt]) -> Counter[str]:
    """How many connections ended each way at connect (see :attr:`Attempt.outcome`)."""
    return Counter(r.outcome for r in records)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by the nearest-rank method; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
