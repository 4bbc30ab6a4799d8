"""A message stored by a receiver that died before handing it over is delivered
without a restart: the daemon adopts it from the spool when the receiver's channel
ends. Run the way the daemon ships (``outrider run``, receiver processes, uvloop)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

from outrider.message.envelope import Envelope, Recipient
from outrider.message.ids import new_queue_id
from outrider.spool.disk import DiskSpool
from tests.support.daemon import DaemonHandle, wait_until
from tests.support.smtp_server import ScriptedSmtpServer


def store_like_a_receiver(d: DaemonHandle, queue_id: str, uid: str) -> None:
    """What a receiver does before its hand-off frame: the durable store."""

    async def store() -> None:
        spool = DiskSpool(d.spool_dir)
        envelope = Envelope(
            queue_id=queue_id,
            sender="a@sender.test",
            recipients=[Recipient("b@example.org")],
            received_at=time.time(),
            client_address="127.0.0.1",
        )
        body = f"Subject: orphan\r\nMessage-ID: <{uid}@client.test>\r\n\r\nhi\r\n".encode()
        try:
            await spool.store(envelope, body)
        finally:
            await spool.close()

    asyncio.run(store())
    then = time.time() - 60  # older than any frame in flight
    os.utime(d.spool_dir / queue_id, (then, then))


def test_a_message_stored_before_a_receiver_died_is_delivered_without_a_restart(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(receiver_processes=2)
    d.start()
    queue_id = new_queue_id()
    store_like_a_receiver(d, queue_id, "orphan-1")
    os.kill(d.child_pids()[0], signal.SIGKILL)
    needle = b"Message-ID: <orphan-1@client.test>"
    wait_until(
        lambda: any(needle in m.data for m in sink.messages), timeout=20, what="orphan delivered"
    )
    wait_until(lambda: queue_id not in d.spool_files(), what="orphan removed from the spool")
    assert "scheduled 1 stored message(s) that were never handed over" in d.log_text()
    assert sum(needle in m.data for m in sink.messages) == 1
