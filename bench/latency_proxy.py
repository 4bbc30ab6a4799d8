"""A TCP relay that delays every octet by a fixed time in each direction.

bench/latency.sh uses it when the kernel has no ``sch_netem`` (``tc qdisc ... netem``
fails, as in some micro-VMs): it runs inside the benchmark's network namespace between
the veth address and smtp-sink, so a request/response dialogue sees ``2 * delay`` of
round-trip time, as with netem on both veth ends. Only latency is emulated: no loss,
no bandwidth limit, and TCP's own ACKs are not delayed (irrelevant for SMTP's small
lock-step exchanges, which is what the benchmark measures).

Usage: python latency_proxy.py LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_MS
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk written ``delay`` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def out() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    task = asyncio.create_task(out())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    except OSError:
        pass
    queue.put_nowait((0.0, b""))
    with contextlib.suppress(OSError):
        await task


async def _serve(listen: str, target: str, delay: float) -> None:
    thost, tport = _hostport(target)

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(thost, tport)
        except OSError:
            c_writer.close()
            return
        for w in (c_writer, s_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                import socket

                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(_pump(c_reader, s_writer, delay), _pump(s_reader, c_writer, delay))
        for w in (c_writer, s_writer):
            w.close()

    host, port = _hostport(listen)
    server = await asyncio.start_server(handle, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    listen, target, delay_ms = sys.argv[1:4]
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is an Outrider dependency
        run = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        run(_serve(listen, target, float(delay_ms) / 1000))


if __name__ == "__main__":
    main()
