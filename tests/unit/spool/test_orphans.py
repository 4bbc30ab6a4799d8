"""Finding stored messages the delivery process was never told about."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from outrider.message.envelope import RcptStatus
from outrider.spool import orphans
from outrider.spool.disk import DiskSpool
from outrider.spool.orphans import find_orphans
from tests.unit.spool.conftest import make_envelope


def age(spool: DiskSpool, queue_id: str, seconds: float) -> None:
    path = spool.directory / queue_id
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_only_unknown_unfinished_messages_old_enough(spool: DiskSpool) -> None:
    orphan, known, young, done = (make_envelope() for _ in range(4))
    notice = make_envelope(queue_id=orphan.queue_id + "-F")
    for env in (orphan, known, young, done, notice):
        await spool.store(env, b"Subject: x\r\n\r\nbody\r\n")
    done.recipients[0].status = RcptStatus.DELIVERED
    await spool.record(done, done.recipients)
    for env in (orphan, known, done, notice):
        age(spool, env.queue_id, 60)
    age(spool, young.queue_id, 1)
    (spool.directory / f"tmp.{os.getpid()}.{make_envelope().queue_id}").write_bytes(b"x")

    found = find_orphans(spool.directory, {known.queue_id}.__contains__, 5.0)

    assert [env.queue_id for env in found] == [orphan.queue_id]
    assert found[0].recipients[0].address == "user0@example.net"
    assert found[0].sender == orphan.sender


async def test_a_damaged_file_is_left_alone_for_recovery(
    spool: DiskSpool, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_envelope()
    await spool.store(env, b"Subject: x\r\n\r\nbody\r\n")
    path = spool.directory / env.queue_id
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # inside the envelope: its checksum fails
    path.write_bytes(bytes(data))
    age(spool, env.queue_id, 60)

    with caplog.at_level(logging.ERROR, logger="outrider.spool"):
        assert find_orphans(spool.directory, lambda _: False, 5.0) == []
    [record] = caplog.records
    assert env.queue_id in record.getMessage() and "checksum" in record.getMessage()
    assert path.read_bytes() == bytes(data)  # neither truncated nor quarantined
    assert not (spool.directory / "quarantine").exists()


async def test_empty_files_are_reserved_names_not_orphans(
    spool: DiskSpool, caplog: pytest.LogCaptureFixture
) -> None:
    """A receiver's reserved names (spool.names) are empty until stored into; the scan
    neither adopts nor complains about them, however old."""
    name = make_envelope().queue_id
    (spool.directory / name).write_bytes(b"")
    age(spool, name, 3600)

    with caplog.at_level(logging.DEBUG, logger="outrider.spool"):
        assert find_orphans(spool.directory, lambda _: False, 5.0) == []
    assert caplog.records == []
    assert (spool.directory / name).exists()


async def test_every_orphan_is_found_whatever_lies_among_them(spool: DiskSpool) -> None:
    """Skipped entries (a directory, a reserved name, a fresh message) do not end the
    scan: the orphans listed after them are found too."""
    orphans = [make_envelope() for _ in range(20)]
    young = make_envelope()
    for env in (*orphans, young):
        await spool.store(env, b"Subject: x\r\n\r\nbody\r\n")
    for env in orphans:
        age(spool, env.queue_id, 60)
    reserved = make_envelope().queue_id
    (spool.directory / reserved).write_bytes(b"")
    age(spool, reserved, 60)
    (spool.directory / make_envelope().queue_id).mkdir()

    found = find_orphans(spool.directory, lambda _: False, 5.0)

    assert sorted(env.queue_id for env in found) == sorted(env.queue_id for env in orphans)


async def test_age_is_judged_against_the_given_now(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, b"Subject: x\r\n\r\nbody\r\n")
    mtime = (spool.directory / env.queue_id).stat().st_mtime

    assert find_orphans(spool.directory, lambda _: False, 5.0, now=mtime + 4.9) == []
    found = find_orphans(spool.directory, lambda _: False, 5.0, now=mtime + 5.0)
    assert [e.queue_id for e in found] == [env.queue_id]  # exactly min_age old: taken


async def test_an_orphan_with_a_big_envelope_is_read_whole(spool: DiskSpool) -> None:
    """An envelope longer than the first read (64 KB: hundreds of recipients)."""
    env = make_envelope(1500)
    await spool.store(env, b"Subject: x\r\n\r\nbody\r\n")
    age(spool, env.queue_id, 60)

    [found] = find_orphans(spool.directory, lambda _: False, 5.0)

    assert [r.address for r in found.recipients] == [r.address for r in env.recipients]


async def test_a_symlink_is_not_adopted(spool: DiskSpool, tmp_path: Path) -> None:
    """Only regular files in the spool are messages; a link to one elsewhere is not."""
    elsewhere = DiskSpool(tmp_path / "elsewhere")
    env = make_envelope()
    await elsewhere.store(env, b"Subject: x\r\n\r\nbody\r\n")
    await elsewhere.close()
    age(elsewhere, env.queue_id, 60)
    link = spool.directory / env.queue_id
    link.symlink_to(elsewhere.directory / env.queue_id)
    then = time.time() - 60
    os.utime(link, (then, then), follow_symlinks=False)  # the link itself is old too

    assert find_orphans(spool.directory, lambda _: False, 5.0) == []


async def test_an_unopenable_file_is_logged_and_skipped(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_envelope()
    await spool.store(env, b"Subject: x\r\n\r\nbody\r\n")
    age(spool, env.queue_id, 60)

    def denied(path: str, flags: int, mode: int = 0o777) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(orphans.os, "open", denied)
    with caplog.at_level(logging.ERROR, logger="outrider.spool"):
        assert find_orphans(spool.directory, lambda _: False, 5.0) == []
    [record] = caplog.records
    assert str(spool.directory / env.queue_id) in record.getMessage()
    assert "Permission denied" in record.getMessage()


async def test_a_message_removed_during_the_scan_is_skipped_and_the_scan_goes_on(
    spool: DiskSpool,
) -> None:
    """Delivered and removed between the listing and the look at the file."""
    lost = [make_envelope() for _ in range(20)]
    delivered = make_envelope()
    for env in (*lost, delivered):
        await spool.store(env, b"Subject: x\r\n\r\nbody\r\n")
        age(spool, env.queue_id, 60)

    def known(name: str) -> bool:
        if name == delivered.queue_id:
            (spool.directory / name).unlink()  # removed just now, by the delivery
        return False

    found = find_orphans(spool.directory, known, 5.0)

    assert sorted(env.queue_id for env in found) == sorted(env.queue_id for env in lost)
