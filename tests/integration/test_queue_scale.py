"""Queue scale behaviour with the real daemon: many recipients in few transactions, and
fresh mail delivered while a large deferred backlog is queued (bench/scale.sh measures
the times; these tests check behaviour only)."""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import Callable
from pathlib import Path

from outrider.message.envelope import Envelope, Recipient
from outrider.spool.disk import DiskSpool
from tests.support.daemon import DaemonHandle, free_port, wait_until
from tests.support.smtp_server import ScriptedSmtpServer

BODY = b"Subject: scale\r\nFrom: <s@sender.test>\r\n\r\nhello\r\n"


def test_a_thousand_recipients_go_out_in_max_rcpt_sized_transactions(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer
) -> None:
    d = make_daemon(extra='[domain."example.org"]\nmax-rcpt-per-transaction = 100\n')
    d.edit_config("max-rcpt-per-message = 100", "max-rcpt-per-message = 1000")
    d.start()
    rcpts = [f"user{i}@example.org" for i in range(1000)]
    with smtplib.SMTP(d.host, d.port, timeout=30) as client:
        refused = client.sendmail("s@sender.test", rcpts, BODY)
    assert refused == {}
    received = sink.wait_for_messages_sync(10, timeout=60)
    time.sleep(1.0)  # nothing more arrives
    received = sink.messages
    assert len(received) == 10  # 1000 recipients / max-rcpt-per-transaction, not 1000
    assert all(len(m.rcpts) == 100 for m in received)
    assert sorted(r for m in received for r in m.rcpts) == sorted(rcpts)
    assert len({m.session for m in received}) <= 20  # within max-smtp-out connections


def _store_backlog(spool_dir: Path, count: int, domains: int) -> None:
    """``count`` queued messages, each for one recipient at one of ``domains`` domains,
    written with the daemon's own spool code (as if queued before a restart)."""

    async def run() -> None:
        spool = DiskSpool(spool_dir, fsync=False)
        now = time.time()
        batch = []
        for i in range(count):
            env = Envelope(
                queue_id=f"B{i:07d}",
                sender="s@sender.test",
                recipients=[Recipient(f"u{i}@d{i % domains}.backlog.test")],
                received_at=now,
                size=len(BODY),
            )
            batch.append(spool.store(env, BODY))
            if len(batch) == 500:
                await asyncio.gather(*batch)
                batch.clear()
        await asyncio.gather(*batch)
        await spool.close()

    asyncio.run(run())


def test_fresh_mail_is_delivered_while_a_large_backlog_is_deferred(
    make_daemon: Callable[..., DaemonHandle], sink: ScriptedSmtpServer, mx_port: int
) -> None:
    closed = free_port()  # nothing listens: every backlog attempt fails to connect
    d = make_daemon(
        domain_defaults=f'route = "127.0.0.1:{closed}"\nmx-rollup = false',
        extra=f'[domain."example.org"]\nroute = "127.0.0.2:{mx_port}"\n',
    )
    d.edit_config('retry-after = ["1s"]', 'retry-after = ["1h"]')
    backlog = 20_000
    _store_backlog(d.spool_dir, backlog, domains=100)
    d.start()
    # Fresh mail right away, while the backlog's first attempts are being made and deferred.
    with smtplib.SMTP(d.host, d.port, timeout=30) as client:
        for i in range(100):
            client.sendmail("s@sender.test", [f"fresh{i}@example.org"], BODY)
    received = sink.wait_for_messages_sync(100, timeout=120)
    assert sorted(r for m in received for r in m.rcpts) == sorted(
        f"fresh{i}@example.org" for i in range(100)
    )
    # The listener opened before the spool's recovery was done (mail is accepted from
    # the start), and recovery took every backlog message and none of the fresh ones.
    log = d.log_text_since(0)
    assert 0 <= log.find("listening on") < log.find(f"recovered {backlog} queued message(s)")
    # The backlog is all still queued (deferred, not lost, not sent to the live sink).
    wait_until(
        lambda: len([p for p in d.spool_dir.iterdir() if p.name.startswith("B")]) == backlog,
        timeout=30,
        what="backlog still spooled",
    )
    assert d.stop() == 0
