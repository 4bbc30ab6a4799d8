"""Disk full, end to end: the real daemon (uvloop, a receiver process) on a spool that is
a small tmpfs, filled up while mail is queued for a destination that does not answer.

What must hold: new mail is refused with ``452 4.3.1`` (after DATA and after BDAT LAST),
the daemon log says why, the delivery process survives status updates it cannot write,
nothing that got a 250 is lost, and once space returns acceptance and delivery resume
without a restart.
"""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests.support.daemon import DaemonHandle, wait_until
from tests.support.smtp_server import ScriptedSmtpServer, ServerScript
from tests.support.tmpfs import PAGE, MountError, fill, mount_tmpfs, page_slack

SENDER = "a@sender.test"
RCPT = "b@example.org"
QUEUED = re.compile(r"queued as (\S+)")
RECORD_FAILED = "cannot record delivery state (spool record failed: [Errno 28]"
STORE_FAILED = "spool store failed: [Errno 28] No space left on device"
# A status record (recipient state and reply text) is longer than this; a spool file with
# less room in its last page cannot take one once the tmpfs has no free page.
SMALLEST_RECORD = 64


def message(uid: str, body_size: int = 2000) -> bytes:
    head = (
        f"From: {SENDER}\r\nTo: {RCPT}\r\nSubject: {uid}\r\nMessage-ID: <{uid}@client.test>\r\n\r\n"
    ).encode()
    lines, rest = divmod(body_size, 80)  # 80-octet lines, the last one longer if need be
    if rest == 1:
        lines, rest = lines - 1, 81
    body = b"x" * 78 + b"\r\n"
    tail = b"x" * (rest - 2) + b"\r\n" if rest else b""
    return head + body * lines + tail


def send_data(d: DaemonHandle, content: bytes) -> tuple[int, str]:
    """One DATA transaction; the reply to the end of data."""
    with smtplib.SMTP(d.host, d.port, timeout=20) as client:
        client.ehlo("client.test")
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(RCPT)[0] == 250
        code, text = client.data(content)
        return code, text.decode()


def send_bdat(d: DaemonHandle, content: bytes) -> tuple[int, str]:
    """One BDAT transaction (two chunks); the reply to BDAT LAST."""
    with smtplib.SMTP(d.host, d.port, timeout=20) as client:
        client.ehlo("client.test")
        assert client.has_extn("chunking")
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(RCPT)[0] == 250
        half = len(content) // 2
        client.send(f"BDAT {half}\r\n".encode() + content[:half])
        assert client.getreply()[0] == 250
        client.send(f"BDAT {len(content) - half} LAST\r\n".encode() + content[half:])
        code, text = client.getreply()
        return code, text.decode()


def queue_id(text: str) -> str:
    match = QUEUED.search(text)
    assert match is not None, text
    return match.group(1)


def records_failed(d: DaemonHandle, queue_ids: list[str]) -> bool:
    log = d.log_text()
    return all(f"{qid}: {RECORD_FAILED}" in log for qid in queue_ids)


def delivered_uids(sink: ScriptedSmtpServer) -> list[str]:
    found = []
    for msg in sink.messages:
        match = re.search(rb"\r\nMessage-ID: <([^@>]+)@client\.test>\r\n", msg.data)
        if match:
            found.append(match.group(1).decode())
    return found


@pytest.fixture
def spool_on_tmpfs(
    make_daemon: Callable[..., DaemonHandle],
) -> Iterator[Callable[[str], DaemonHandle]]:
    """Daemons with shipped defaults (uvloop, one receiver process) whose spool is a
    tmpfs of the given size; killed, then unmounted, after the test."""
    with ExitStack() as stack:

        def factory(size: str) -> DaemonHandle:
            d = make_daemon(
                receiver_processes=1,
                domain_defaults='[domain."example.org"]\nsmtp-greeting-timeout = "60s"\n',
            )
            try:
                stack.enter_context(mount_tmpfs(d.spool_dir, size))
            except MountError as exc:
                pytest.skip(f"cannot mount a tmpfs for the spool (needs root): {exc}")
            stack.callback(d.kill)
            return d

        yield factory


@pytest.mark.slow
def test_disk_full_refuses_452_keeps_accepted_mail_and_recovers_without_restart(
    spool_on_tmpfs: Callable[[str], DaemonHandle], mx_port: int
) -> None:
    d = spool_on_tmpfs("4m")
    # The destination accepts TCP and never greets: every attempt is in flight while
    # the disk fills, and fails (connection lost) only when this server stops.
    hung = ScriptedSmtpServer(ServerScript(hang_at="greeting"), host="127.0.0.2", port=mx_port)
    hung.start_in_thread()
    try:
        d.start()
        assert "event loop: uvloop" in d.log_text()
        receivers = d.child_pids()
        assert len(receivers) == 1
        # Calibrate: the spool file of a message is its body plus a nearly fixed overhead.
        code, text = send_data(d, message("calib000", 5000))
        assert code == 250, text
        overhead = (d.spool_dir / queue_id(text)).stat().st_size - 5000
        accepted = {"calib000": queue_id(text)}
        # Messages whose spool files end just short of a page boundary: with the disk
        # full, their first status record needs a page that is not there.
        for i, room in enumerate((8, 16, 24, 32)):
            body = 5000 + (-(overhead + 5000) % PAGE) - room
            if body < 5000:
                body += PAGE
            uid = f"edge{i:04d}"
            code, text = send_data(d, message(uid, body))
            assert code == 250, text
            accepted[uid] = queue_id(text)
        wait_until(lambda: hung.connections >= 1, what="first attempt connected")

        filler = fill(d.spool_dir)
        started = time.monotonic()
        code, text = send_data(d, message("refused1"))
        data_reply = (code, text)
        detect = time.monotonic() - started
        code, text = send_bdat(d, message("refused2"))
        bdat_reply = (code, text)
        assert data_reply[0] == 452 and data_reply[1].startswith("4.3.1 "), data_reply
        assert bdat_reply[0] == 452 and bdat_reply[1].startswith("4.3.1 "), bdat_reply
        wait_until(lambda: d.log_text().count(STORE_FAILED) >= 2, what="spool-full log lines")
        assert "ERROR [receiver-0] outrider.intake: spool: cannot store" in d.log_text()
        assert not [f for f in d.spool_files() if f.startswith("tmp.")], "half-written files"

        # Attempts fail while the disk is full: the deferral is accounted, the status
        # record cannot be written, and the delivery process carries on.
        edges = [
            uid for uid, qid in accepted.items() if page_slack(d.spool_dir / qid) < SMALLEST_RECORD
        ]
        assert edges, "no spool file ends close enough to a page boundary"
        hung.stop_thread()
        wait_until(
            lambda: records_failed(d, [accepted[uid] for uid in edges]),
            timeout=20,
            what="status records refused for the files without room",
        )
        assert d.child_pids() == receivers, "the receiver process was replaced"
        edge_ids = {f"<{uid}@client.test>" for uid in edges}
        wait_until(
            lambda: edge_ids <= {r["msgId"] for r in d.accounting_rows() if r["type"] == "t"},
            what="the failed attempts accounted as deferrals",
        )
        for uid, qid in accepted.items():
            assert (d.spool_dir / qid).exists(), f"{uid} lost from the spool"

        # Space returns, the destination comes back: no restart needed.
        filler.unlink()
        space_back = time.monotonic()
        sink = ScriptedSmtpServer(ServerScript(), host="127.0.0.2", port=mx_port)
        with sink.run_in_thread():
            code, text = send_data(d, message("after0001"))
            assert code == 250, text
            accepted["after0001"] = queue_id(text)
            wait_until(
                lambda: set(delivered_uids(sink)) >= set(accepted),
                timeout=60,
                what="every accepted message delivered",
            )
            resumed = time.monotonic() - space_back
            wait_until(lambda: d.spool_files() == [], timeout=20, what="spool empty")
        assert d.child_pids() == receivers
        assert d.stop() == 0
    finally:
        hung.stop_thread()

    assert sorted(delivered_uids(sink)) == sorted(accepted), "each accepted message once"
    rows = d.accounting_rows()
    assert not [r for r in rows if r["type"] == "b"]
    for uid in accepted:
        kinds = [r["type"] for r in rows if r["msgId"] == f"<{uid}@client.test>"]
        assert kinds.count("d") == 1, (uid, kinds)
    refused = [r for r in rows if "refused" in r["msgId"]]
    assert refused == []
    print(
        f"FIGURES disk: 452 after DATA in {detect:.3f}s {data_reply}; BDAT {bdat_reply}; "
        f"edge messages {len(edges)}; all delivered {resumed:.1f}s after space returned; "
        f"deferrals {sum(1 for r in rows if r['type'] == 't')}"
    )


def test_spool_filled_by_queued_mail_accepts_again_once_deliveries_free_it(
    spool_on_tmpfs: Callable[[str], DaemonHandle], mx_port: int
) -> None:
    """No operator steps in: the destination is down, mail piles up until the spool is
    full, and the space its deliveries free is enough for acceptance to resume."""
    d = spool_on_tmpfs("2m")
    d.start()
    receivers = d.child_pids()
    accepted: dict[str, str] = {}
    refusal: tuple[int, str] | None = None
    for i in range(40):  # 2 MiB / 150 kB: full long before this
        code, text = send_data(d, message(f"pile{i:04d}", 150_000))
        if code != 250:
            refusal = (code, text)
            break
        accepted[f"pile{i:04d}"] = queue_id(text)
    assert refusal is not None and refusal[0] == 452, refusal
    assert refusal[1].startswith("4.3.1 "), refusal
    assert len(accepted) >= 5, accepted
    assert STORE_FAILED in d.log_text()
    assert not [f for f in d.spool_files() if f.startswith("tmp.")], "half-written files"
    wait_until(
        lambda: (
            {f"<{u}@client.test>" for u in accepted}
            <= {r["msgId"] for r in d.accounting_rows() if r["type"] == "t"}
        ),
        what="every queued message deferred (destination down)",
    )

    sink = ScriptedSmtpServer(ServerScript(), host="127.0.0.2", port=mx_port)
    with sink.run_in_thread():
        up = time.monotonic()
        wait_until(
            lambda: set(delivered_uids(sink)) >= set(accepted),
            timeout=60,
            what="the piled-up mail delivered",
        )
        drained = time.monotonic() - up
        code, text = send_data(d, message("fresh000", 150_000))
        assert code == 250, (code, text)
        wait_until(lambda: "fresh000" in delivered_uids(sink), what="new mail delivered")
        wait_until(lambda: d.spool_files() == [], timeout=20, what="spool empty")
    assert d.child_pids() == receivers
    assert d.stop() == 0
    assert sorted(delivered_uids(sink)) == sorted([*accepted, "fresh000"])
    rows = d.accounting_rows()
    assert not [r for r in rows if r["type"] == "b"]
    for uid in [*accepted, "fresh000"]:
        kinds = [r["type"] for r in rows if r["msgId"] == f"<{uid}@client.test>"]
        assert kinds.count("d") == 1, (uid, kinds)
    print(
        f"FIGURES disk pile-up: {len(accepted)} x 150 kB accepted, then {refusal}; "
        f"drained {drained:.1f}s after the destination came back; "
        f"record failures {d.log_text().count(RECORD_FAILED)}"
    )
