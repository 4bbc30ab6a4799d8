"""Maildir and LMTP under the real scheduler: a selector sends one domain to a Maildir
and another to an LMTP server, and each recipient gets its own event (delivered,
deferred or bounced); LMTP connections obey the queue's max-smtp-out like SMTP ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from outrider.config.loader import parse_config
from outrider.config.model import Config, DomainPolicy
from outrider.delivery.lmtp_transport import LmtpSettings, LmtpTransport
from outrider.delivery.maildir_transport import MaildirSettings, MaildirTransport
from outrider.delivery.transport import Transport
from outrider.events.types import Bounced, Deferred, Delivered, Event, RecipientEvent
from outrider.message.envelope import Envelope, Recipient
from outrider.queue.scheduler import Scheduler
from outrider.spool.disk import DiskSpool
from tests.support.fake_transport import FakeTransport
from tests.support.lmtp_server import LmtpScript, LmtpServer

CONFIG = """
[server]
hostname = "mx.test"
state-dir = "{state}"
[dns]
nameservers = ["127.0.0.1:9"]
[[listener]]
address = "127.0.0.1:0"
[domain."*"]
retry-after = ["10m"]
[domain."two.test"]
max-smtp-out = 2
[domain."four.test"]
max-smtp-out = 4
"""


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def per_recipient(self) -> list[RecipientEvent]:
        return [e for e in self.events if isinstance(e, RecipientEvent)]

    async def wait_for(self, count: int, timeout: float = 30) -> list[RecipientEvent]:
        deadline = time.monotonic() + timeout
        while len(self.per_recipient()) < count:
            assert time.monotonic() < deadline, f"{len(self.per_recipient())} of {count} events"
            await asyncio.sleep(0.02)
        return self.per_recipient()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return parse_config(CONFIG.format(state=tmp_path / "state"))


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[DiskSpool]:
    s = DiskSpool(tmp_path / "spool")
    yield s
    await s.close()


def selector(routes: dict[str, Transport]) -> Callable[[str, DomainPolicy], Transport]:
    other = FakeTransport()

    def select(domain: str, policy: DomainPolicy) -> Transport:
        return routes.get(domain, other)

    return select


async def test_one_domain_to_maildir_another_to_lmtp_each_recipient_its_outcome(
    tmp_path: Path, config: Config, spool: DiskSpool
) -> None:
    root = tmp_path / "mail"
    maildir = MaildirTransport(
        MaildirSettings(path=f"{root}/{{domain}}/{{user}}/Maildir", quota=1_000_000)
    )
    full_box = root / "local.test" / "fullbox" / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (full_box / sub).mkdir(parents=True)
    (full_box / "cur" / "1.M1P1.h,S=900000:2,S").write_bytes(b"x")  # counted by its S=
    script = LmtpScript(
        rcpt_replies={"nobody@dovecot.test": "550 5.1.1 no such user"},
        data_replies={
            "full@dovecot.test": "452 4.2.2 mailbox full",
            "gone@dovecot.test": "550 5.2.1 mailbox disabled",
        },
    )
    async with LmtpServer(script) as server:
        lmtp = LmtpTransport(LmtpSettings(server.target, "mx.test"))
        scheduler = Scheduler(
            config=config,
            spool=spool,
            transports=selector({"local.test": maildir, "dovecot.test": lmtp}),
        )
        recorder = Recorder()
        scheduler.bus.subscribe(recorder)
        # Over 256 KiB and handed over without its body: read back from the spool in
        # chunks (a StoredBody), as a big or retried message is.
        body = b"Subject: team\r\n\r\n" + b"".join(b"line %06d\r\n" % i for i in range(40000))
        addresses = [
            "alice@local.test",
            "../escape@local.test",
            "fullbox@local.test",
            "ok@dovecot.test",
            "full@dovecot.test",
            "nobody@dovecot.test",
            "gone@dovecot.test",
        ]
        env = Envelope("Q1", "boss@sender.test", [Recipient(a) for a in addresses], time.time())
        await spool.store(env, body)
        scheduler.submit(env, None)
        events = await recorder.wait_for(len(addresses))
        await scheduler.stop(1)

    got = {e.recipient: (type(e).__name__, e.status, e.queue, e.remote_mta) for e in events}
    lmtp_queue = f"lmtp:{server.target.describe()}/default"
    where = server.target.describe()
    assert got == {
        "alice@local.test": ("Delivered", "2.0.0", "maildir:local.test/default", "maildir"),
        "../escape@local.test": ("Bounced", "5.1.3", "maildir:local.test/default", "maildir"),
        "fullbox@local.test": ("Deferred", "4.2.2", "maildir:local.test/default", "maildir"),
        "ok@dovecot.test": ("Delivered", "2.0.0", lmtp_queue, where),
        "full@dovecot.test": ("Deferred", "4.2.2", lmtp_queue, where),
        "nobody@dovecot.test": ("Bounced", "5.1.1", lmtp_queue, where),
        "gone@dovecot.test": ("Bounced", "5.2.1", lmtp_queue, where),
    }
    assert sum(isinstance(e, Delivered) for e in events) == 2
    assert sum(isinstance(e, Deferred) for e in events) == 2
    assert sum(isinstance(e, Bounced) for e in events) == 3
    [delivered] = (root / "local.test" / "alice" / "Maildir" / "new").iterdir()
    assert delivered.read_bytes().endswith(body.replace(b"\r\n", b"\n"))
    assert sorted(p.name for p in root.iterdir()) == ["local.test"]
    assert sorted(p.name for p in (root / "local.test").iterdir()) == ["alice", "fullbox"]
    [msg] = server.messages
    assert msg.delivered == ["ok@dovecot.test"] and msg.data == body


async def test_lmtp_connections_are_limited_by_max_smtp_out(
    config: Config, spool: DiskSpool
) -> None:
    async with (
        LmtpServer(LmtpScript(data_delay=0.2)) as two,
        LmtpServer(LmtpScript(data_delay=0.2)) as four,
    ):
        transports: dict[str, Transport] = {
            "two.test": LmtpTransport(LmtpSettings(two.target, "mx.test")),
            "four.test": LmtpTransport(LmtpSettings(four.target, "mx.test")),
        }
        scheduler = Scheduler(config=config, spool=spool, transports=selector(transports))
        recorder = Recorder()
        scheduler.bus.subscribe(recorder)
        body = b"Subject: shaped\r\n\r\nhello\r\n"
        for i in range(16):
            for domain in ("two.test", "four.test"):
                env = Envelope(f"Q{domain[0]}{i}", "s@x.test", [Recipient(f"u{i}@{domain}")], 0)
                env.received_at = time.time()
                await spool.store(env, body)
                scheduler.submit(env, body)
        events = await recorder.wait_for(32)
        await scheduler.stop(1)
    assert all(isinstance(e, Delivered) for e in events)
    assert (two.peak_connections, four.peak_connections) == (2, 4)
    assert len(two.messages) == len(four.messages) == 16
