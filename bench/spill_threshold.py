"""Receive-and-store time per message, held in memory vs spilled to the spool.

Usage: python bench/spill_threshold.py [--sizes 100,250,1024,4096] [--messages 40]
                                       [--rounds 2]

For each size (KiB), sends ``--messages`` messages one after the other with smtplib to
an in-process listener (the real session, intake and DiskSpool, fsync on, uvloop) and
prints the mean time per message (DATA to 250, fsync included) with the content held
in memory and with it spilled from the first 64 KiB on. It is what the spill threshold
(``outrider.spool.base.IN_MEMORY_LIMIT``) was chosen from: spilling costs a little per
message for small ones and saves copies for big ones. The spool goes under
``BENCH_TMPDIR`` (default /var/tmp: use a real disk) and is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import os
import shutil
import smtplib
import tempfile
import time

import uvloop

from outrider.inbound.receiver import Listener, open_listening_socket
from outrider.inbound.session import ListenerContext
from outrider.intake import Intake, IntakePipeline
from outrider.intake.content import ContentBuffer
from outrider.intake.vmta import VmtaTable
from outrider.message.envelope import Envelope
from outrider.smtp.server import ServerConfig
from outrider.spool.disk import DiskSpool

LINE = b"0123456789 the quick brown fox jumps over the lazy dog 0123456789\r\n"
MEMORY = 1 << 40  # a limit no message reaches
SPILLED = 64 * 1024


class Discard:
    def accept(self, envelope: Envelope, body: bytes | None) -> None:
        return None


async def per_message_ms(limit: int, size: int, messages: int) -> float:
    ContentBuffer.__init__.__defaults__ = (limit,)  # the sessions' buffers use it
    directory = tempfile.mkdtemp(prefix="spill-bench-", dir=os.environ.get("BENCH_TMPDIR"))
    spool = DiskSpool(directory)
    serial = itertools.count()
    intake = Intake(
        IntakePipeline([]),
        spool,
        Discard(),
        "mx.bench.test",
        VmtaTable(known=frozenset({"default"}), sender_defaults={}),
        new_queue_id=lambda: f"Q{next(serial)}",
    )
    ctx = ListenerContext(
        name="bench",
        protocol_config=ServerConfig("mx.bench.test"),
        relay_networks=(ipaddress.ip_network("127.0.0.0/8"),),
        intake=intake,
    )
    listener = Listener(ctx, open_listening_socket("127.0.0.1", 0, reuse_port=False))
    await listener.start()
    port = listener.sock.getsockname()[1]
    message = b"Subject: bench\r\n\r\n" + LINE * (size // len(LINE))

    def client() -> float:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            start = time.perf_counter()
            for _ in range(messages):
                smtp.sendmail("a@bench.test", ["b@bench.test"], message)
            return time.perf_counter() - start

    try:
        elapsed = await asyncio.to_thread(client)
    finally:
        await listener.stop(1.0)
        await spool.close()
        shutil.rmtree(directory, ignore_errors=True)
    return elapsed / messages * 1000


async def main(sizes: list[int], messages: int, rounds: int) -> None:
    for size in sizes:
        for _ in range(rounds):
            memory = await per_message_ms(MEMORY, size * 1024, messages)
            spilled = await per_message_ms(SPILLED, size * 1024, messages)
            print(f"{size:6d} KiB  in memory {memory:7.2f} ms/msg  spilled {spilled:7.2f} ms/msg")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,250,1024,4096")
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    uvloop.run(main([int(s) for s in args.sizes.split(",")], args.messages, args.rounds))
