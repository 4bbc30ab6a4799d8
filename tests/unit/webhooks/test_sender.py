"""The sender against a loopback aiohttp receiver: batches, signatures, retries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from outrider.config.model import WebhookSettings
from outrider.events.types import Bounced, Delivered, Feedback, MessageInfo, QueueEvent
from outrider.webhooks import sender as sender_mod
from outrider.webhooks.queue import DiskQueue
from outrider.webhooks.sender import WebhookSender
from outrider.webhooks.subscriber import Target, WebhookSubscriber
from tests.support.daemon import free_port
from tests.support.webhook_receiver import WebhookReceiver

SECRET = b"0123456789abcdef0123456789abcdef"
INFO = MessageInfo("Q1", "s@x.test", 1.0, "job7", "env", "<m@x>", 10)


def settings(url: str, **kw: object) -> WebhookSettings:
    return WebhookSettings(  # type: ignore[arg-type]
        name="t", url=url, secret_file=Path("/nonexistent"), batch_interval=0.05, **kw
    )


async def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


def rcpt(cls: type[Delivered] | type[Bounced], who: str, at: float, **kw: object) -> Delivered:
    return cls(at, INFO, who, "", "2.0.0", "250 ok", "mx", "x.test/default", "default", **kw)  # type: ignore[arg-type, return-value]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(SECRET, free_port())
    r.start()
    yield r
    r.stop()


async def test_batches_are_signed_kinds_filtered_and_retried_with_the_same_id(
    tmp_path: Path, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender_mod, "backoff", lambda n: 0.05)
    receiver.statuses = [500, 401]
    queue = DiskQueue(tmp_path / "q")
    lock = asyncio.Lock()
    hook = WebhookSender(settings(receiver.url, batch_size=3), queue, SECRET, lock)
    target = Target(
        "t", frozenset({"delivered", "expired", "complained", "backoff"}), queue, lock, hook.wakeup
    )
    sub = WebhookSubscriber([target])
    now = time.time()
    sub.handle(
        [
            rcpt(Delivered, "a@x.test", now),
            rcpt(Bounced, "b@x.test", now, expired=True),
            rcpt(Bounced, "c@x.test", now),  # "bounced": not wanted
            Feedback(now, "complained", "d@x.test", "x.test", job_id="job7"),
            QueueEvent(now, "x.test/default", "default", "backoff", reply="421 slow"),
        ]
    )
    await sub.flush()
    assert queue.pending == 4
    task = asyncio.create_task(hook.run())
    try:
        await wait_for(lambda: hook.stats.sent == 4 and queue.pending == 0)
    finally:
        task.cancel()
    assert len(receiver.batches) == 2
    assert receiver.attempts[:3] == [receiver.attempts[0]] * 3  # 500, 401, then accepted
    first, second = receiver.batches
    assert first.signed and second.signed and first.batch_id == receiver.attempts[0]
    kinds = [e["type"] for e in receiver.events()]
    assert kinds == ["delivered", "expired", "complained", "backoff"]
    delivered = receiver.events()[0]
    assert delivered["rcpt"] == "a@x.test" and delivered["job_id"] == "job7"
    assert delivered["id"] == "Q1" and delivered["status"] == "2.0.0"
    assert hook.stats.failures == 2 and hook.stats.sent == 4
    assert queue.pending == 0


async def test_events_older_than_max_age_are_dropped(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    queue = DiskQueue(tmp_path / "q")
    lock = asyncio.Lock()
    hook = WebhookSender(settings(receiver.url, max_age=60.0), queue, SECRET, lock)
    sub = WebhookSubscriber([Target("t", frozenset({"delivered"}), queue, lock, hook.wakeup)])
    now = time.time()
    sub.handle([rcpt(Delivered, "old@x.test", now - 3600), rcpt(Delivered, "new@x.test", now)])
    await sub.flush()
    task = asyncio.create_task(hook.run())
    try:
        await wait_for(lambda: hook.stats.sent == 1)
    finally:
        task.cancel()
    assert [e["rcpt"] for e in receiver.events()] == ["new@x.test"]
    assert hook.stats.expired == 1
