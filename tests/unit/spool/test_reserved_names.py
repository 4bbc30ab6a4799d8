"""Reserved names (spool.names): a store into one needs one flush, not two."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from pathlib import Path

import pytest

from outrider.message.ids import is_queue_id
from outrider.spool import temps
from outrider.spool.base import DuplicateMessageError, SpoolError, SpoolFullError
from outrider.spool.disk import _STORE, QUARANTINE_DIR, DiskSpool, _Job
from outrider.spool.names import LOW, TARGET
from outrider.spool.spill import SpilledBody
from tests.unit.spool.conftest import make_envelope

BODY = b"Subject: reserved\r\n\r\n" + b"line of text\r\n" * 100


async def ready(spool: DiskSpool) -> None:
    """Ask for reserved names and wait until the committer has made them durable."""
    spool.release_queue_id(spool.new_queue_id())  # a fresh id: starts the reservation
    for _ in range(500):
        if spool.stats.reserved >= TARGET:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {spool.stats.reserved} names reserved")


def empty_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file() and p.stat().st_size == 0)


async def test_names_are_reserved_in_one_directory_sync(spool: DiskSpool) -> None:
    first = spool.new_queue_id()
    assert is_queue_id(first)  # nothing reserved yet: a fresh id, stored the usual way
    await ready(spool)
    assert spool.stats.dir_fsyncs == 1  # TARGET empty files, one directory sync
    assert len(empty_files(spool.directory)) == TARGET


async def test_a_store_into_a_reserved_name_flushes_the_file_only(spool: DiskSpool) -> None:
    await ready(spool)
    syncs = spool.stats.dir_fsyncs
    env = make_envelope(2, queue_id=spool.new_queue_id())
    env.size = len(BODY)

    await spool.store(env, BODY)

    assert spool.stats.in_place == 1
    assert spool.stats.fsyncs == 1
    assert spool.stats.dir_fsyncs == syncs  # the name was durable already
    assert await spool.load_body(env.queue_id) == BODY
    assert not [p for p in spool.directory.iterdir() if p.name.startswith("tmp.")]
    assert [e.queue_id for e in spool.recover()] == [env.queue_id]


async def test_a_fresh_id_is_stored_with_a_directory_sync(spool: DiskSpool) -> None:
    await ready(spool)
    syncs = spool.stats.dir_fsyncs
    env = make_envelope()  # an id the spool did not hand out (a DSN's, a caller's)
    await spool.store(env, BODY)
    assert spool.stats.in_place == 0
    assert spool.stats.dir_fsyncs == syncs + 1


async def test_names_are_replenished_below_the_low_mark(spool: DiskSpool) -> None:
    await ready(spool)
    envs = [make_envelope(queue_id=spool.new_queue_id()) for _ in range(TARGET - LOW + 1)]
    await asyncio.gather(*(spool.store(env, BODY) for env in envs))
    for _ in range(500):
        if spool.stats.reserved >= 2 * TARGET - LOW:
            break
        await asyncio.sleep(0.01)
    assert spool.stats.reserved >= TARGET + (TARGET - LOW)  # refilled to TARGET
    assert spool.stats.in_place == len(envs)
    assert len(empty_files(spool.directory)) == TARGET


async def test_a_released_id_serves_the_next_message(spool: DiskSpool) -> None:
    await ready(spool)
    refused = spool.new_queue_id()
    spool.release_queue_id(refused)
    ids = {spool.new_queue_id() for _ in range(TARGET)}
    assert refused in ids
    assert (spool.directory / refused).stat().st_size == 0


async def test_close_removes_unused_reserved_names(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "spool")
    await ready(spool)
    env = make_envelope(queue_id=spool.new_queue_id())
    spool.new_queue_id()  # taken, never stored
    await spool.store(env, BODY)
    await spool.close()
    assert os.listdir(spool.directory) == [env.queue_id]


async def test_recovery_removes_empty_files_of_an_earlier_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What a crash leaves: reserved names never stored into. A stored message beside
    them is recovered; nothing is quarantined."""
    directory = tmp_path / "spool"
    before = DiskSpool(directory)
    await ready(before)
    env = make_envelope(queue_id=before.new_queue_id())
    await before.store(env, BODY)
    leftover = empty_files(directory)
    assert len(leftover) == TARGET - 1
    # no close(): the process died

    after = DiskSpool(directory)
    with caplog.at_level(logging.INFO, logger="outrider.spool.disk"):
        assert [e.queue_id for e in after.recover()] == [env.queue_id]
    assert os.listdir(directory) == [env.queue_id]
    assert after.unused_names_removed == TARGET - 1
    assert any("removed 63 unused reserved names" in r.getMessage() for r in caplog.records)
    assert not (directory / QUARANTINE_DIR).exists()
    await after.close()


async def test_recovery_keeps_its_own_reserved_names(spool: DiskSpool) -> None:
    await ready(spool)
    assert list(spool.recover()) == []
    assert len(empty_files(spool.directory)) == TARGET


async def test_recovery_skips_names_reserved_after_it_started(tmp_path: Path) -> None:
    """A receiver reserves names while the delivery process recovers the spool."""
    directory = tmp_path / "spool"
    receiver = DiskSpool(directory)
    recovering = DiskSpool(directory)
    started_ns = time.time_ns() - 1
    await ready(receiver)
    assert list(recovering.recover(started_ns=started_ns)) == []
    assert len(empty_files(directory)) == TARGET
    env = make_envelope(queue_id=receiver.new_queue_id())
    await receiver.store(env, BODY)
    assert receiver.stats.in_place == 1
    await receiver.close()
    await recovering.close()


async def test_a_reserved_name_removed_behind_its_back_is_stored_the_usual_way(
    spool: DiskSpool,
) -> None:
    await ready(spool)
    env = make_envelope(queue_id=spool.new_queue_id())
    (spool.directory / env.queue_id).unlink()  # e.g. another process's recovery
    syncs = spool.stats.dir_fsyncs

    await spool.store(env, BODY)

    assert spool.stats.in_place == 0
    assert spool.stats.dir_fsyncs == syncs + 1
    assert await spool.load_body(env.queue_id) == BODY


async def test_a_reserved_name_with_content_is_never_written_over(spool: DiskSpool) -> None:
    await ready(spool)
    env = make_envelope(queue_id=spool.new_queue_id())
    path = spool.directory / env.queue_id
    path.write_bytes(b"someone else's octets")

    with pytest.raises(DuplicateMessageError):
        await spool.store(env, BODY)
    assert path.read_bytes() == b"someone else's octets"


async def test_a_reserved_name_that_is_no_longer_a_file_is_left_alone(spool: DiskSpool) -> None:
    """Whatever now lies under the name is never replaced: the store is a duplicate."""
    await ready(spool)
    env = make_envelope(queue_id=spool.new_queue_id())
    path = spool.directory / env.queue_id
    path.unlink()
    path.mkdir()  # cannot be opened for writing

    with pytest.raises(DuplicateMessageError):
        await spool.store(env, BODY)
    assert path.is_dir()
    assert not [p for p in spool.directory.iterdir() if p.name.startswith("tmp.")]


async def test_a_failed_write_in_place_removes_the_name(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not acknowledged, so not kept: the client is told 452 and will send again."""
    await ready(spool)
    env = make_envelope(queue_id=spool.new_queue_id())

    def full(fd: int, buffers: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", full)
    with pytest.raises(SpoolFullError):
        await spool.store(env, BODY)
    assert not (spool.directory / env.queue_id).exists()


async def test_a_spilled_body_replaces_its_reserved_name(spool: DiskSpool) -> None:
    """Through a rename, a new directory entry: synced like a fresh name."""
    await ready(spool)
    syncs = spool.stats.dir_fsyncs
    env = make_envelope(queue_id=spool.new_queue_id())
    head = b"Subject: big\r\n\r\n"
    tail = b"x" * 70 + b"\r\n"
    spill = spool.spill(len(head))
    await spill.write(tail * 1000)
    body = SpilledBody(head, spill)
    env.size = body.size

    await spool.store(env, body)

    assert await spool.load_body(env.queue_id) == head + tail * 1000
    assert [e.queue_id for e in spool.recover()] == [env.queue_id]
    assert not [p for p in spool.directory.iterdir() if p.name.startswith("tmp.")]
    assert not temps.contains(spill.path)
    assert spool.stats.stores == 1 and spool.stats.in_place == 0
    assert spool.stats.dir_fsyncs == syncs + 1


async def test_a_spilled_body_that_cannot_replace_its_reserved_name_fails_the_store(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ready(spool)
    env = make_envelope(queue_id=spool.new_queue_id())
    spill = spool.spill(12)
    await spill.write(b"\r\nbody\r\n")
    real = os.rename

    def failing(src: str, dst: str) -> None:
        if os.path.basename(dst) == env.queue_id:
            raise OSError(errno.EIO, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(SpoolError, match="store failed") as info:
        await spool.store(env, SpilledBody(b"Subject: x\r\n", spill))
    assert not isinstance(info.value, DuplicateMessageError)
    assert not [p for p in spool.directory.iterdir() if p.name.startswith("tmp.")]
    assert not temps.contains(spill.path)
    assert spool.stats.stores == 0 and spool.stats.in_place == 0
    assert (spool.directory / env.queue_id).stat().st_size == 0  # never written into


async def test_removal_does_not_sync_the_directory(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    syncs = spool.stats.dir_fsyncs
    await spool.remove(env.queue_id)
    assert spool.stats.removes == 1
    assert spool.stats.dir_fsyncs == syncs
    assert not (spool.directory / env.queue_id).exists()


async def test_names_whose_directory_cannot_be_synced_are_removed_not_used(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Not durable, so not reserved: a store into one could lose its name in a crash."""

    def failing(fd: int) -> None:  # files use fdatasync; the directory uses fsync
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with caplog.at_level(logging.ERROR, logger="outrider.spool.disk"):
        spool.release_queue_id(spool.new_queue_id())  # asks for names
        for _ in range(500):
            if caplog.records and not os.listdir(spool.directory):
                break
            await asyncio.sleep(0.01)
    assert any("reserved names" in r.getMessage() for r in caplog.records)
    assert os.listdir(spool.directory) == []
    assert spool.stats.reserved == 0 and spool.stats.dir_fsyncs == 0
    monkeypatch.undo()
    env = make_envelope(queue_id=spool.new_queue_id())
    await spool.store(env, BODY)
    assert spool.stats.in_place == 0  # a fresh id, stored the usual way


def test_reserving_gives_way_to_queued_work(tmp_path: Path) -> None:
    """Reserving is idle work: with a store waiting it makes one name, syncs it, and
    says the pool is not full yet (it goes on after the store)."""
    spool = DiskSpool(tmp_path / "spool")
    spool._queue.put(_Job(_STORE, "waiting", b"", b"", None, None))
    assert spool._reserve() is False
    assert spool.stats.reserved == 1
    assert spool.stats.dir_fsyncs == 1
    assert len(empty_files(spool.directory)) == 1


def test_a_full_pool_reserves_nothing_and_syncs_nothing(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "spool")
    assert spool._reserve() is True
    assert spool.stats.reserved == TARGET and spool.stats.dir_fsyncs == 1
    assert spool._reserve() is True
    assert spool.stats.reserved == TARGET and spool.stats.dir_fsyncs == 1


def test_each_refill_is_synced_once(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "spool")
    assert spool._reserve() is True
    taken = [spool._names.take() for _ in range(TARGET - LOW + 1)]  # no committer
    assert spool._reserve() is True
    assert spool.stats.reserved == TARGET + len(taken)
    assert spool.stats.dir_fsyncs == 2


async def test_in_place_stores_are_counted_over_batches(spool: DiskSpool) -> None:
    await ready(spool)
    for _ in range(3):
        await spool.store(make_envelope(queue_id=spool.new_queue_id()), BODY)
    assert spool.stats.in_place == 3
