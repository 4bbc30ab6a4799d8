"""DiskSpool: store, read, record, remove, errors, group commit."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from outrider.message.envelope import RcptStatus
from outrider.smtp.replies import LOCAL_ERROR
from outrider.spool import disk, temps
from outrider.spool.base import (
    INSUFFICIENT_STORAGE,
    CorruptMessageError,
    DuplicateMessageError,
    Spool,
    SpoolClosedError,
    SpoolError,
    SpoolFullError,
    UnknownMessageError,
)
from outrider.spool.disk import DiskSpool
from outrider.spool.recycle import RECYCLE_DIR
from tests.unit.spool.conftest import make_envelope

BODY = b"Subject: test\r\n\r\n" + b"line of text\r\n" * 300


def test_disk_spool_satisfies_the_protocol(tmp_path: Path) -> None:
    spool: Spool = DiskSpool(tmp_path / "a" / "b")  # creates missing parents
    assert (tmp_path / "a" / "b").is_dir()
    asyncio.run(spool.close())


async def test_round_trip(spool: DiskSpool) -> None:
    env = make_envelope(2)
    env.size = len(BODY)
    await spool.store(env, BODY)
    assert await spool.load_body(env.queue_id) == BODY
    assert (spool.directory / env.queue_id).is_file()
    assert not [p for p in spool.directory.iterdir() if p.name.startswith("tmp.")]
    assert [e for e in spool.recover()] == [env]
    assert spool.stats.stores == 1
    assert spool.stats.fsyncs == 1
    assert spool.stats.dir_fsyncs == 1


async def test_empty_body_and_large_body(spool: DiskSpool) -> None:
    empty, large = make_envelope(), make_envelope()
    big = os.urandom(3 * 1024 * 1024)
    await asyncio.gather(spool.store(empty, b""), spool.store(large, big))
    assert await spool.load_body(empty.queue_id) == b""
    assert await spool.load_body(large.queue_id) == big


async def test_concurrent_stores_are_group_committed(spool: DiskSpool) -> None:
    envs = [make_envelope() for _ in range(200)]
    bodies = {env.queue_id: BODY + env.queue_id.encode() for env in envs}
    await asyncio.gather(*(spool.store(env, bodies[env.queue_id]) for env in envs))
    assert spool.stats.stores == 200
    assert spool.stats.fsyncs == 200
    assert spool.stats.dir_fsyncs < 20  # one per batch, not one per message
    await spool.close()

    again = DiskSpool(spool.directory)
    recovered = {env.queue_id: env for env in again.recover()}
    assert recovered == {env.queue_id: env for env in envs}
    loaded = await asyncio.gather(*(again.load_body(q) for q in bodies))
    assert dict(zip(bodies, loaded, strict=True)) == bodies
    await again.close()


async def test_per_recipient_state_survives_restart(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = DiskSpool(directory)
    env = make_envelope(3)
    await spool.store(env, BODY)
    r0, r1, r2 = env.recipients
    r0.status, r0.attempts, r0.last_reply, r0.last_mta = (
        RcptStatus.DELIVERED,
        1,
        "250 2.0.0 ok",
        "mx1.example.net",
    )
    r1.attempts, r1.next_attempt, r1.last_reply = 1, 1_900_000_000.25, "451 4.7.1 greylisted"
    await spool.record(env, [r0, r1])
    r2.attempts, r2.next_attempt, r2.last_reply = 2, 1_900_000_600.0, "421 4.4.2 timeout"
    r2.last_mta = "[192.0.2.7]"
    await spool.record(env, [r2])
    await spool.close()  # simulated restart: a new spool object on the same directory

    spool = DiskSpool(directory)
    (back,) = list(spool.recover())
    assert back == env
    assert [r.status for r in back.recipients] == [
        RcptStatus.DELIVERED,
        RcptStatus.PENDING,
        RcptStatus.PENDING,
    ]
    assert back.recipients[1].next_attempt == 1_900_000_000.25
    assert back.recipients[2].last_reply == "421 4.4.2 timeout"
    # state changes append to the file: the body is untouched
    assert await spool.load_body(env.queue_id) == BODY
    await spool.close()


async def test_concurrent_records_for_one_message_all_land(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path)
    env = make_envelope(50)
    await spool.store(env, BODY)
    for i, rcpt in enumerate(env.recipients):
        rcpt.attempts = i + 1
    await asyncio.gather(*(spool.record(env, [r]) for r in env.recipients))
    await spool.close()
    (back,) = list(DiskSpool(tmp_path).recover())
    assert [r.attempts for r in back.recipients] == list(range(1, 51))


async def test_all_final_messages_are_removed(spool: DiskSpool) -> None:
    done, pending = make_envelope(2), make_envelope(1)
    await spool.store(done, BODY)
    await spool.store(pending, BODY)
    for rcpt in done.recipients:
        rcpt.status = RcptStatus.BOUNCED
    await spool.record(done, done.recipients)
    # Crash before remove(): recovery finishes the job instead of redelivering.
    assert [e.queue_id for e in spool.recover()] == [pending.queue_id]
    assert not (spool.directory / done.queue_id).exists()

    await spool.remove(pending.queue_id)
    assert list(spool.recover()) == []
    with pytest.raises(UnknownMessageError):
        await spool.load_body(pending.queue_id)
    await spool.remove(pending.queue_id)  # idempotent
    assert spool.stats.removes == 2


async def test_a_final_message_owing_a_notice_is_recovered_not_removed(
    spool: DiskSpool,
) -> None:
    env = make_envelope(1)
    await spool.store(env, BODY)
    env.recipients[0].status = RcptStatus.BOUNCED
    env.notices = "F"
    await spool.record(env, env.recipients)
    [recovered] = spool.recover()
    assert (recovered.queue_id, recovered.notices, recovered.is_done) == (env.queue_id, "F", True)
    env.notices = ""
    await spool.record(env, [])  # the notice is stored: an envelope-only record
    assert list(spool.recover()) == []
    assert not (spool.directory / env.queue_id).exists()


async def test_duplicate_is_its_own_error(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    syncs = spool.stats.dir_fsyncs
    with pytest.raises(DuplicateMessageError):
        await spool.store(env, BODY)
    assert spool.stats.stores == 1  # the refused one is not counted, nor synced
    assert spool.stats.dir_fsyncs == syncs


async def test_unknown_and_invalid_ids(spool: DiskSpool) -> None:
    env = make_envelope()
    with pytest.raises(UnknownMessageError) as info:
        await spool.load_body(env.queue_id)
    assert info.value.reply == LOCAL_ERROR
    with pytest.raises(UnknownMessageError):
        await spool.record(env, env.recipients)
    with pytest.raises(ValueError):
        await spool.record(env, [make_envelope().recipients[0]])
    for bad in ("../etc", "tmp.1.x", "", "a/b", ".hidden"):
        env.queue_id = bad
        with pytest.raises(ValueError):
            await spool.store(env, BODY)
    assert os.listdir(spool.directory) == []


async def test_duplicate_queue_id_never_overwrites(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    with pytest.raises(SpoolError):
        await spool.store(env, b"other body")
    assert await spool.load_body(env.queue_id) == BODY
    assert sorted(os.listdir(spool.directory)) == [env.queue_id]


async def test_corrupt_body_is_detected(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    path = spool.directory / env.queue_id
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x20
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptMessageError):
        await spool.load_body(env.queue_id)


async def test_disk_full_is_a_typed_error_with_452(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, buffers: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", full)
    env = make_envelope()
    with pytest.raises(SpoolFullError) as info:
        await spool.store(env, BODY)
    assert info.value.reply == INSUFFICIENT_STORAGE
    assert str(info.value.reply) == "452 4.3.1 Insufficient system storage"
    assert os.listdir(spool.directory) == []  # the temp file was cleaned up


async def test_a_failed_directory_sync_withdraws_the_name_durably(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails with 4xx: its name is unlinked and the directory synced again, so
    the message cannot reappear after a crash (the client will send it again)."""
    spool = DiskSpool(tmp_path / "spool")
    await spool.store(make_envelope(), BODY)
    await spool.remove(spool.directory.iterdir().__next__().name)
    before = spool.stats.dir_fsyncs
    syncs: list[int] = []
    real = DiskSpool._sync_dir

    def flaky(self: DiskSpool) -> None:
        syncs.append(len([n for n in os.listdir(self.directory) if n != RECYCLE_DIR]))
        if len(syncs) == 1:
            raise OSError(errno.EIO, "Input/output error")
        real(self)

    monkeypatch.setattr(DiskSpool, "_sync_dir", flaky)
    env = make_envelope()
    with pytest.raises(SpoolError):
        await spool.store(env, BODY)
    assert syncs == [1, 0]  # failed with the name in place, synced again without it
    assert [n for n in os.listdir(spool.directory) if n != RECYCLE_DIR] == []
    assert spool.stats.dir_fsyncs == before + 1  # the second one
    await spool.close()


async def test_failed_record_is_rolled_back(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_envelope(2)
    await spool.store(env, BODY)
    size = (spool.directory / env.queue_id).stat().st_size
    real_writev = os.writev

    def half_then_full(fd: int, buffers: list[memoryview]) -> int:
        monkeypatch.setattr(os, "writev", real_writev)
        os.write(fd, bytes(buffers[0][:5]))
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(os, "writev", half_then_full)
    env.recipients[0].attempts = 1
    with pytest.raises(SpoolFullError):
        await spool.record(env, env.recipients[:1])
    assert (spool.directory / env.queue_id).stat().st_size == size
    env.recipients[1].status = RcptStatus.DELIVERED
    await spool.record(env, env.recipients[1:])
    (back,) = list(spool.recover())
    assert back.recipients[1].status is RcptStatus.DELIVERED


async def test_cancelled_caller_does_not_break_the_committer(spool: DiskSpool) -> None:
    env = make_envelope()
    task = asyncio.create_task(spool.store(env, BODY))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    other = make_envelope()
    await spool.store(other, BODY)
    assert await spool.load_body(other.queue_id) == BODY


async def test_close_drains_and_then_refuses(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path)
    envs = [make_envelope() for _ in range(20)]
    stores = [asyncio.create_task(spool.store(env, BODY)) for env in envs]
    await asyncio.sleep(0)
    await spool.close()
    await asyncio.gather(*stores)
    assert len(os.listdir(tmp_path)) == 20
    with pytest.raises(SpoolClosedError):
        await spool.store(make_envelope(), BODY)
    with pytest.raises(SpoolClosedError):
        await spool.load_body(envs[0].queue_id)
    await spool.close()  # idempotent


async def test_stores_from_two_spool_objects_share_a_directory(tmp_path: Path) -> None:
    a, b = DiskSpool(tmp_path), DiskSpool(tmp_path)
    envs = [make_envelope() for _ in range(40)]
    await asyncio.gather(*(s.store(e, BODY) for s, e in zip([a, b] * 20, envs, strict=True)))
    await a.close()
    await b.close()
    assert len(list(DiskSpool(tmp_path).recover())) == 40


async def test_fsync_can_be_disabled_for_tests(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, fsync=False)
    env = make_envelope()
    await spool.store(env, BODY)
    await spool.record(env, env.recipients)
    assert spool.stats.fsyncs == 0 and spool.stats.dir_fsyncs == 0
    assert await spool.load_body(env.queue_id) == BODY
    await spool.close()


async def test_a_removal_that_fails_is_a_spool_error(spool: DiskSpool) -> None:
    queue_id = make_envelope().queue_id
    (spool.directory / queue_id).mkdir()  # unlink() refuses a directory
    with pytest.raises(SpoolError, match="remove failed"):
        await spool.remove(queue_id)
    assert spool.stats.removes == 0
    assert (spool.directory / queue_id).is_dir()


async def test_entries_that_cannot_be_read_are_spool_errors_not_unknown(spool: DiskSpool) -> None:
    unreadable, looping = make_envelope().queue_id, make_envelope().queue_id
    (spool.directory / unreadable).mkdir()  # opens, but read() fails
    (spool.directory / looping).symlink_to(looping)  # open() fails: ELOOP
    for queue_id in (unreadable, looping):
        with pytest.raises(SpoolError, match="read failed") as info:
            await spool.load_body(queue_id)
        assert not isinstance(info.value, UnknownMessageError | CorruptMessageError)


async def test_a_stored_message_is_private(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    assert (spool.directory / env.queue_id).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("code", "error"), [(errno.ENOSPC, SpoolFullError), (errno.EMLINK, SpoolError)]
)
async def test_a_name_that_cannot_be_linked_fails_the_store_and_leaves_nothing(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch, code: int, error: type[SpoolError]
) -> None:
    """Not a duplicate: the typed error of the failure, no temp file left behind (nor
    remembered as this process's), nothing counted as stored, no directory sync."""

    def refusing(src: str, dst: str) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", refusing)
    env = make_envelope()
    with pytest.raises(error) as info:
        await spool.store(env, BODY)
    assert not isinstance(info.value, DuplicateMessageError)
    assert "store failed" in str(info.value)
    assert os.listdir(spool.directory) == []
    temp = os.path.join(spool.directory, f"tmp.{os.getpid()}.{env.queue_id}")
    assert not temps.contains(temp)
    assert spool.stats.stores == 0 and spool.stats.dir_fsyncs == 0
    monkeypatch.undo()
    await spool.store(env, BODY)  # the id was never taken: it can be stored now
    assert await spool.load_body(env.queue_id) == BODY


async def test_a_store_that_cannot_write_its_temp_file_forgets_it(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, buffers: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", full)
    env = make_envelope()
    with pytest.raises(SpoolFullError):
        await spool.store(env, BODY)
    temp = os.path.join(spool.directory, f"tmp.{os.getpid()}.{env.queue_id}")
    assert not temps.contains(temp)
    assert spool.stats.stores == 0


async def test_a_stored_temp_file_is_forgotten(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    temp = os.path.join(spool.directory, f"tmp.{os.getpid()}.{env.queue_id}")
    assert not temps.contains(temp)


async def test_a_rolled_back_record_is_made_durable(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cut back to the last good length is synced: a torn record that came back
    after a crash would hide every later append."""
    env = make_envelope(2)
    await spool.store(env, BODY)
    path = spool.directory / env.queue_id
    size = path.stat().st_size
    synced: list[int] = []
    real = disk._datasync

    def failing_first(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        if len(synced) == 1:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(disk, "_datasync", failing_first)
    env.recipients[0].attempts = 1
    with pytest.raises(SpoolError, match="record failed"):
        await spool.record(env, env.recipients[:1])
    assert synced[0] > size  # the record was written, its sync failed
    assert synced[1:] == [size]  # then the cut was synced
    assert path.stat().st_size == size


async def test_a_record_that_cannot_be_rolled_back_still_fails(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_envelope(2)
    await spool.store(env, BODY)

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(disk, "_datasync", failing)
    with (
        caplog.at_level(logging.ERROR, logger="outrider.spool.disk"),
        pytest.raises(SpoolError, match="record failed"),
    ):
        await spool.record(env, env.recipients[:1])
    assert any("roll back" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    env.recipients[1].status = RcptStatus.DELIVERED
    await spool.record(env, env.recipients[1:])  # the committer goes on


async def test_a_store_writes_its_own_temp_file_in_the_spool_directory(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Named after this process and the queue id, and known as in flight while it is
    written, so that no recovery (of this process or another) removes it."""
    real = os.writev
    into: list[tuple[str, bool]] = []

    def recording(fd: int, buffers: list[memoryview]) -> int:
        path = os.readlink(f"/proc/self/fd/{fd}")
        into.append((path, temps.contains(path)))
        return real(fd, buffers)

    monkeypatch.setattr(os, "writev", recording)
    env = make_envelope()
    await spool.store(env, BODY)
    temp = os.path.join(spool.directory, f"tmp.{os.getpid()}.{env.queue_id}")
    assert into == [(temp, True)]
    assert not temps.contains(temp)


async def test_a_store_is_never_written_into_an_existing_temp_file(spool: DiskSpool) -> None:
    """A stale temp file under the store's temp name (an earlier process with the same
    pid) is never written into: its octets could end up behind the body."""
    env = make_envelope()
    stale = spool.directory / f"tmp.{os.getpid()}.{env.queue_id}"
    stale.write_bytes(b"\0" * (2 * len(BODY)))
    with pytest.raises(SpoolError, match="store failed"):
        await spool.store(env, BODY)
    assert not (spool.directory / env.queue_id).exists()


@pytest.mark.parametrize("stored", ["in one piece", "in pieces"])
async def test_short_reads_are_continued(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch, stored: str
) -> None:
    """pread may return fewer octets than asked: reading goes on where it stopped."""
    env = make_envelope(3)
    await spool.store(env, BODY)
    env.recipients[1].attempts = 2
    await spool.record(env, env.recipients[1:2])  # a record after the body
    real = os.pread

    def short(fd: int, size: int, offset: int) -> bytes:
        return real(fd, min(size, 1000), offset)

    if stored == "in pieces":
        monkeypatch.setattr(os, "pread", short)
    assert await spool.load_body(env.queue_id) == BODY
    stored_body = await spool.open_body(env.queue_id)
    assert stored_body.size == len(BODY)
    [back] = list(spool.recover())
    assert back == env


async def test_counters_add_up_over_batches(spool: DiskSpool) -> None:
    a, b = make_envelope(), make_envelope()
    await spool.store(a, BODY)
    await spool.store(b, BODY)
    await spool.record(a, a.recipients)
    await spool.record(b, b.recipients)
    await spool.remove(a.queue_id)
    stats = spool.stats
    assert (stats.batches, stats.stores, stats.records, stats.removes) == (5, 2, 2, 1)
    assert (stats.fsyncs, stats.dir_fsyncs) == (4, 2)


async def test_records_for_many_messages_in_one_batch_land_in_their_own_files(
    spool: DiskSpool,
) -> None:
    envs = [make_envelope(2) for _ in range(12)]
    await asyncio.gather(*(spool.store(env, BODY) for env in envs))
    for i, env in enumerate(envs):
        env.recipients[0].attempts = i + 1
    batches = spool.stats.batches
    await asyncio.gather(*(spool.record(env, env.recipients[:1]) for env in envs))
    assert spool.stats.batches - batches < len(envs)  # some shared a batch
    recovered = {e.queue_id: e for e in spool.recover()}
    assert recovered == {env.queue_id: env for env in envs}


@pytest.mark.parametrize("options", [{"workers": 1}, {"fsync": False}])
async def test_a_spool_without_a_sync_pool_commits_batches(
    tmp_path: Path, options: dict[str, object]
) -> None:
    spool = DiskSpool(tmp_path / "spool", **options)  # type: ignore[arg-type]
    envs = [make_envelope() for _ in range(20)]
    await asyncio.gather(*(spool.store(env, BODY) for env in envs))
    assert spool.stats.batches < len(envs)
    for env in envs:
        assert await spool.load_body(env.queue_id) == BODY
    await spool.close()


async def test_short_writes_are_continued(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """writev may write fewer octets than asked, ending inside any buffer."""
    real_write = os.write

    def short(fd: int, buffers: list[memoryview]) -> int:
        return real_write(fd, b"".join(bytes(b) for b in buffers)[:333])

    monkeypatch.setattr(os, "writev", short)
    env = make_envelope(3)
    await spool.store(env, BODY)
    env.recipients[2].attempts = 1
    await spool.record(env, env.recipients[2:])
    monkeypatch.undo()
    assert await spool.load_body(env.queue_id) == BODY
    assert list(spool.recover()) == [env]


def test_an_unclosed_spool_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    async def here() -> None:  # the same in this process, closed (maps the test to it)
        spool = DiskSpool(tmp_path / "spool")
        await spool.store(make_envelope(), b"body")
        await spool.close()

    asyncio.run(here())
    script = (
        "import asyncio, sys\n"
        "from outrider.spool.disk import DiskSpool\n"
        "from tests.unit.spool.conftest import make_envelope\n"
        "async def main():\n"
        "    spool = DiskSpool(sys.argv[1])\n"
        "    await spool.store(make_envelope(), b'body')\n"
        "asyncio.run(main())\n"
    )
    root = Path(__file__).resolve().parents[3]
    source = Path(disk.__file__).resolve().parents[2]  # the outrider under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), str(root)])}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "spool")],
        check=True,
        timeout=15,
        cwd=root,
        env=env,
    )
    assert len(os.listdir(tmp_path / "spool")) == 2


async def test_removals_in_a_batch_whose_directory_sync_fails_fail(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The removal's unlink is made durable by the batch's directory sync; when it fails
    the removal is not confirmed either."""
    old = make_envelope()
    await spool.store(old, BODY)
    busy, release = threading.Event(), threading.Event()
    real_writev = os.writev

    def blocking(fd: int, buffers: list[memoryview]) -> int:
        busy.set()
        release.wait(10)
        return real_writev(fd, buffers)

    def failing(self: DiskSpool) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "writev", blocking)
    first = asyncio.create_task(spool.store(make_envelope(), BODY))
    await asyncio.to_thread(busy.wait, 10)  # the committer is in its first batch
    monkeypatch.setattr(os, "writev", real_writev)
    new = asyncio.create_task(spool.store(make_envelope(), BODY))
    removal = asyncio.create_task(spool.remove(old.queue_id))
    await asyncio.sleep(0.05)  # both queued: they form the next batch
    monkeypatch.setattr(DiskSpool, "_sync_dir", failing)
    release.set()
    results = await asyncio.gather(first, new, removal, return_exceptions=True)
    assert all(isinstance(r, SpoolError) for r in results)


async def test_an_unexpected_failure_in_a_commit_fails_its_callers_not_the_committer(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> bytes:
        raise RuntimeError("bug")

    monkeypatch.setattr(disk, "encode_prefix", broken)
    env = make_envelope()
    with (
        caplog.at_level(logging.ERROR, logger="outrider.spool.disk"),
        pytest.raises(SpoolError, match="commit failed"),
    ):
        await spool.store(env, BODY)
    assert any(r.exc_info for r in caplog.records)
    monkeypatch.undo()
    await spool.store(env, BODY)
    assert await spool.load_body(env.queue_id) == BODY
