"""The hand-off channel between a receiver process and the delivery process, on real
Unix sockets: frames arrive, a broken channel asks for adoption and is re-established."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from outrider.intake.sink import SinkUnavailableError
from outrider.message.envelope import Envelope
from outrider.runtime.adoption import OrphanAdopter
from outrider.runtime.handoff import _ADOPT, _READY, HandoffClient, HandoffServer, frame
from outrider.spool.disk import DiskSpool
from tests.unit.spool.conftest import make_envelope


async def until(pred: object, timeout: float = 5.0) -> None:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_frames_reach_the_scheduler_and_a_lost_channel_is_reestablished(
    tmp_path: Path,
) -> None:
    got: list[tuple[str, bytes | None]] = []
    adopt_requests: list[float] = []
    server = HandoffServer(
        str(tmp_path / "h.sock"),
        lambda env, body: got.append((env.queue_id, body)),
        adopt=lambda: adopt_requests.append(time.monotonic()),
    )
    await server.start()
    client = await HandoffClient.connect(server.path)
    try:
        client.send_ready()
        first = make_envelope()
        client.accept(first, b"small body")
        await until(lambda: len(got) == 1)
        assert got == [(first.queue_id, b"small body")]
        assert server.ready_pids and not adopt_requests

        # The delivery process drops the channel (as it does for a bad frame).
        for task in list(server._clients):
            task.cancel()
        await until(lambda: len(adopt_requests) == 1)  # the channel's end asks
        await until(lambda: not client.connected)
        # Stored already (the intake answers 250): the adoption will schedule it.
        with contextlib.suppress(SinkUnavailableError):
            client.accept(make_envelope(), b"x")
        await until(lambda: client.connected)
        await until(lambda: len(adopt_requests) == 2)  # the reconnected receiver asks
        later = make_envelope()
        client.accept(later, b"y")
        await until(lambda: any(q == later.queue_id for q, _ in got))
    finally:
        await client.close()
        await server.stop()
    assert len(adopt_requests) == 2  # a clean stop asks for nothing


async def test_adoption_schedules_a_stored_message_once(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "spool")
    scheduled: dict[str, Envelope] = {}
    try:
        orphan = make_envelope()
        await spool.store(orphan, b"Subject: x\r\n\r\nbody\r\n")
        adopter = OrphanAdopter(
            spool.directory,
            scheduled.__contains__,
            lambda env, body: scheduled.setdefault(env.queue_id, env),
            min_age=0.2,
        )
        assert await adopter.scan() == 0  # too young: its frame may be in flight
        await asyncio.sleep(0.3)
        assert await adopter.scan() == 1
        assert list(scheduled) == [orphan.queue_id]
        assert await adopter.scan() == 0  # known now
        adopter.request()  # now and after min_age; nothing new to find
        await asyncio.sleep(0.9)
        assert adopter.adopted == 1
        await adopter.stop()
    finally:
        await spool.close()


async def test_frames_split_and_batched_arbitrarily_arrive_whole_and_in_order(
    tmp_path: Path,
) -> None:
    """The server takes every whole frame from what it reads, whatever the boundaries;
    the client writes one event-loop turn's frames together."""
    got: list[tuple[str, bytes | None]] = []
    adopt_requests: list[int] = []
    server = HandoffServer(
        str(tmp_path / "h.sock"),
        lambda env, body: got.append((env.queue_id, body)),
        adopt=lambda: adopt_requests.append(1),
    )
    await server.start()
    try:
        envelopes = [make_envelope() for _ in range(3)]
        stream = (
            frame(envelopes[0], b"one")
            + _READY
            + frame(envelopes[1], None)
            + _ADOPT
            + frame(envelopes[2], b"three")
        )
        _, writer = await asyncio.open_unix_connection(server.path)
        for cut in (1, 5, 9, len(stream) // 2, len(stream) - 1):  # odd boundaries
            writer.write(stream[:cut])
            await writer.drain()
            await asyncio.sleep(0.01)
            stream = stream[cut:]
        writer.write(stream)
        await until(lambda: len(got) == 3)
        assert got == [
            (envelopes[0].queue_id, b"one"),
            (envelopes[1].queue_id, None),
            (envelopes[2].queue_id, b"three"),
        ]
        assert server.ready == 1 and len(adopt_requests) == 1
        writer.close()

        client = await HandoffClient.connect(server.path)
        burst = [make_envelope() for _ in range(20)]
        for envelope in burst:  # one turn: one write
            client.accept(envelope, b"b")
        await until(lambda: len(got) == 23)
        assert [q for q, _ in got[3:]] == [e.queue_id for e in burst]
        await client.close()
    finally:
        await server.stop()
