"""Hand-off channel cost: CPU microseconds per message for receiver → delivery process frames.

    .venv/bin/python bench/handoff_speed.py [--messages N] [--burst B]

Both ends run in this one process on a real Unix socket (uvloop when installed): the
receiver's ``HandoffClient.accept`` for bursts of B messages (as a group commit
completes B stores in one event-loop turn) and the ``HandoffServer`` decoding them and
calling ``submit``. Prints the CPU time (``time.process_time``) per message, best of 5.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from outrider.message.envelope import Envelope, Recipient
from outrider.runtime.handoff import HandoffClient, HandoffServer


def _envelope(i: int) -> Envelope:
    return Envelope(
        queue_id=f"1A2B3C4D{i:06X}",
        sender="sender@bench.test",
        recipients=[Recipient(address="rcpt@bench.test")],
        received_at=1_700_000_000.0,
        size=4096,
    )


async def _run(messages: int, burst: int, sock: str) -> float:
    got = 0
    done = asyncio.get_running_loop().create_future()

    def submit(envelope: Envelope, body: bytes | None) -> None:
        nonlocal got
        got += 1
        if got == messages and not done.done():
            done.set_result(None)

    server = HandoffServer(sock, submit)
    await server.start()
    client = await HandoffClient.connect(sock)
    envelopes = [_envelope(i) for i in range(burst)]
    body = b"Subject: bench\r\n\r\n" + b"x" * 4000 + b"\r\n"
    try:
        start = time.process_time()
        sent = 0
        while sent < messages:
            for envelope in envelopes[: min(burst, messages - sent)]:
                client.accept(envelope, body)
                sent += 1
            await asyncio.sleep(0)
        await done
        return time.process_time() - start
    finally:
        await client.close()
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--burst", type=int, default=4)
    args = parser.parse_args()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(5):
            sock = str(Path(tmp) / f"h{i}.sock")
            best = min(best, runner(_run(args.messages, args.burst, sock)))
    print(
        f"hand-off: {best / args.messages * 1e6:.1f} µs CPU per message "
        f"({args.messages} messages, bursts of {args.burst}, best of 5)"
    )


if __name__ == "__main__":
    main()
