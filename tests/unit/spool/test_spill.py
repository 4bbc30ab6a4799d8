"""Spilled bodies: written as they arrive, completed in place by the store (durable
before it returns), removed when refused or abandoned; and stored bodies read back in
chunks with their checksum checked before the last one."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outrider.spool import disk, temps
from outrider.spool.base import CorruptMessageError, SpoolError, SpoolFullError
from outrider.spool.codec import PREFIX_SIZE, crc32_combine, decode_prefix, encode_envelope
from outrider.spool.disk import DiskSpool
from outrider.spool.reader import body_chunks
from outrider.spool.spill import SPILL_ROOM, SpilledBody, SpillFile
from tests.unit.spool.conftest import make_envelope


def exists(path: str) -> bool:
    return os.path.exists(path)


HEAD = b"Received: by test\r\nSubject: big\r\n"
TAIL = b"\r\n" + b"".join(b"line %06d .dot\r\n.starts here\r\n" % i for i in range(20000))


@settings(deadline=None)  # pure Python: no deadline on a loaded machine
@given(st.binary(max_size=300), st.binary(max_size=3000))
def test_crc32_combine_is_the_crc_of_the_concatenation(a: bytes, b: bytes) -> None:
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_crc32_combine_for_long_tails() -> None:
    a, b = b"head", os.urandom(3 * 1024 * 1024 + 7)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


async def spilled(spool: DiskSpool, head: bytes = HEAD, tail: bytes = TAIL) -> SpilledBody:
    spill = spool.spill(len(head))
    for i in range(0, len(tail), 65536):
        await spill.write(tail[i : i + 65536])
    return SpilledBody(head, spill)


def take_name(path: str) -> None:
    with open(path, "wb") as fh:
        fh.write(b"someone else's")


def leftovers(spool: DiskSpool) -> list[str]:
    return [name for name in os.listdir(spool.directory) if name.startswith("tmp.")]


async def test_a_spilled_body_is_stored_in_place_and_reads_back_whole(spool: DiskSpool) -> None:
    body = await spilled(spool)
    path = body.tail.path
    inode = os.stat(path).st_ino
    env = make_envelope(3)
    await spool.store(env, body)
    stored = spool.directory / env.queue_id
    assert stored.stat().st_ino == inode  # the spill file itself, linked: no copy
    assert await spool.load_body(env.queue_id) == HEAD + TAIL
    [back] = list(spool.recover())
    assert back.queue_id == env.queue_id
    assert [r.address for r in back.recipients] == [r.address for r in env.recipients]
    assert leftovers(spool) == [] and not temps.contains(path)


async def test_an_envelope_too_big_for_the_room_is_stored_through_a_copy(
    spool: DiskSpool,
) -> None:
    body = await spilled(spool)
    env = make_envelope(1500)  # far more JSON than SPILL_ROOM
    await spool.store(env, body)
    assert await spool.load_body(env.queue_id) == HEAD + TAIL
    [back] = list(spool.recover())
    assert len(back.recipients) == 1500
    assert leftovers(spool) == []


async def test_an_empty_tail_is_stored(spool: DiskSpool) -> None:
    body = SpilledBody(b"Subject: x\r\n", spool.spill(12))
    env = make_envelope()
    await spool.store(env, body)
    assert await spool.load_body(env.queue_id) == b"Subject: x\r\n"


async def test_the_spilled_file_is_synced_before_the_store_returns(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 250 follows the return of store(): the file under its final name must be the
    one synced (prefix written first), and the name's directory synced too."""
    synced: list[tuple[str, bytes]] = []
    real = disk._datasync

    def recording(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        synced.append((os.path.basename(path), os.pread(fd, 4, 0)))
        real(fd)

    monkeypatch.setattr(disk, "_datasync", recording)
    body = await spilled(spool)
    spill_name = os.path.basename(body.tail.path)
    env = make_envelope()
    await spool.store(env, body)
    assert synced == [(spill_name, b"ORSP")]  # synced complete, under its temp name
    assert spool.stats.dir_fsyncs == 1


async def test_a_failed_sync_refuses_and_leaves_nothing(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(disk, "_datasync", failing)
    body = await spilled(spool)
    env = make_envelope()
    with pytest.raises(SpoolError):
        await spool.store(env, body)
    assert os.listdir(spool.directory) == []
    assert not temps.contains(body.tail.path)


async def test_a_failed_spill_write_fails_the_store_with_452(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    spill = spool.spill(len(HEAD))
    await spill.write(b"\r\nfirst piece\r\n")

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    await spill.write(b"second piece\r\n")  # never raises: kept for the store
    monkeypatch.undo()
    await spill.write(b"third piece\r\n")  # skipped after a failure
    assert isinstance(spill.error, SpoolFullError)
    assert spill.size == len(b"\r\nfirst piece\r\n")
    with pytest.raises(SpoolFullError) as info:
        await spool.store(make_envelope(), SpilledBody(HEAD, spill))
    assert info.value.reply.code == 452
    assert os.listdir(spool.directory) == []


async def test_discard_removes_the_file_after_a_write_in_flight(tmp_path: Path) -> None:
    spill = SpillFile(str(tmp_path), 10)
    await spill.write(b"first")
    entered, release = threading.Event(), threading.Event()
    real = temps.pwrite_all

    def slow(fd: int, data: bytes, offset: int) -> None:
        entered.set()
        release.wait(10)
        real(fd, data, offset)

    temps.pwrite_all = slow  # type: ignore[assignment]
    try:
        write = spill.write(b"second")
        await asyncio.to_thread(entered.wait, 10)
        spill.discard()  # while the write holds the file
        await asyncio.sleep(0.05)
        assert exists(spill.path)  # the removal waits for the write
        release.set()
        await write
    finally:
        temps.pwrite_all = real  # type: ignore[assignment]
    for _ in range(1000):  # the removal runs in the executor (unlink, then forget)
        if not exists(spill.path) and not temps.contains(spill.path):
            break
        await asyncio.sleep(0.01)
    assert os.listdir(tmp_path) == []
    assert not temps.contains(spill.path)
    await spill.write(b"late")  # a write after the discard is a no-op
    assert os.listdir(tmp_path) == []
    with pytest.raises(SpoolError):
        spill.detach()


async def test_a_store_after_discard_fails_and_leaves_nothing(spool: DiskSpool) -> None:
    body = await spilled(spool)
    body.discard()
    with pytest.raises(SpoolError):
        await spool.store(make_envelope(), body)
    for _ in range(500):  # the removal runs in the executor
        if not os.listdir(spool.directory):
            break
        await asyncio.sleep(0.01)
    assert os.listdir(spool.directory) == []


async def test_a_discard_holds_before_its_removal_has_run(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a busy machine the executor may not have removed the file yet when the store
    (or another write) comes: the discard already holds, and the file still goes."""
    body = await spilled(spool)
    real = SpillFile._remove
    go = threading.Event()

    def late(self: SpillFile) -> None:
        go.wait(5)
        real(self)

    monkeypatch.setattr(SpillFile, "_remove", late)
    body.discard()
    await body.tail.write(b"more")
    with pytest.raises(SpoolError, match="discarded"):
        await spool.store(make_envelope(), body)
    assert exists(body.tail.path)  # the removal has not run yet
    go.set()
    for _ in range(500):
        if not os.listdir(spool.directory):
            break
        await asyncio.sleep(0.01)
    assert os.listdir(spool.directory) == []


async def test_recovery_removes_an_abandoned_spill_file_and_spares_a_live_one(
    spool: DiskSpool,
) -> None:
    live = await spilled(spool)
    dead = spool.directory / "tmp.999999999.7.spill"  # no such process
    dead.write_bytes(b"\0" * 100 + b"half a message")
    assert list(spool.recover()) == []
    assert not dead.exists()
    assert exists(live.tail.path)  # this process is still writing it
    live.discard()


async def test_a_stored_body_is_read_in_chunks(spool: DiskSpool) -> None:
    env = make_envelope()
    body = HEAD + TAIL
    await spool.store(env, body)
    stored = await spool.open_body(env.queue_id)
    assert stored.size == len(body)
    chunks = [chunk async for chunk in stored.chunks(chunk_size=100_000)]
    assert b"".join(chunks) == body
    assert max(map(len, chunks)) == 100_000
    assert await stored.head(10) == body[:10]
    again = [chunk async for chunk in stored.chunks()]  # reusable
    assert b"".join(again) == body


async def test_body_chunks_reads_either_form(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, HEAD + TAIL)
    stored = await spool.open_body(env.queue_id)
    assert b"".join([c async for c in body_chunks(stored)]) == HEAD + TAIL
    assert [c async for c in body_chunks(b"in memory")] == [b"in memory"]
    assert [c async for c in body_chunks(b"")] == []


async def test_a_damaged_body_fails_before_its_last_chunk(spool: DiskSpool) -> None:
    env = make_envelope()
    body = HEAD + TAIL
    await spool.store(env, body)
    path = spool.directory / env.queue_id
    data = bytearray(path.read_bytes())
    offset = decode_prefix(bytes(data[:PREFIX_SIZE])).body_offset
    data[offset + 5] ^= 0x01  # in the first chunk
    path.write_bytes(bytes(data))
    stored = await spool.open_body(env.queue_id)
    got = 0
    with pytest.raises(CorruptMessageError):
        async for chunk in stored.chunks(chunk_size=65536):
            got += len(chunk)
    assert 0 < got < len(body)  # every chunk but the last was given out


async def test_open_body_checks_the_header(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, b"Subject: x\r\n\r\nbody\r\n")
    path = spool.directory / env.queue_id
    data = bytearray(path.read_bytes())
    data[PREFIX_SIZE + 3] ^= 0x01  # in the envelope JSON
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptMessageError):
        await spool.open_body(env.queue_id)


def test_the_room_holds_a_typical_envelope() -> None:
    """Typical messages are completed in place: the room fits a Received field, added
    headers and the envelope of a hundred recipients with long addresses."""
    env = make_envelope(100)
    for r in env.recipients:
        r.address = "a-rather-long-local-part.with.dots@" + "sub." * 10 + "example.net"
    assert PREFIX_SIZE + len(encode_envelope(env)) + 4096 < SPILL_ROOM


async def test_a_copied_tail_is_copied_in_bounded_pieces_and_private(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """copy_file_range asked for at most _COPY_CHUNK octets at a time, and it may copy
    fewer than asked: the copy goes on from where it stopped."""
    real = os.copy_file_range
    asked: list[int] = []
    into: set[tuple[str, bool]] = set()

    def short(src: int, dst: int, count: int, src_off: int, dst_off: int) -> int:
        asked.append(count)
        path = os.readlink(f"/proc/self/fd/{dst}")
        into.add((path, temps.contains(path)))
        return real(src, dst, min(count, 50_000), src_off, dst_off)

    monkeypatch.setattr(disk, "_COPY_CHUNK", 100_000)
    monkeypatch.setattr(os, "copy_file_range", short)
    body = await spilled(spool)
    env = make_envelope(1500)  # too big for the room: copied
    await spool.store(env, body)
    assert await spool.load_body(env.queue_id) == HEAD + TAIL
    assert max(asked) == 100_000 and sum(min(a, 50_000) for a in asked) == len(TAIL)
    assert oct((spool.directory / env.queue_id).stat().st_mode & 0o777) == oct(0o600)
    assert leftovers(spool) == []
    copy = os.path.join(spool.directory, f"tmp.{os.getpid()}.{env.queue_id}")
    # into a temp file of the store's own in the spool directory, known as in flight
    assert into == {(copy, True)}
    assert not temps.contains(copy) and not temps.contains(body.tail.path)


@pytest.mark.parametrize("code", [errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP])
async def test_a_tail_is_copied_through_a_buffer_where_the_kernel_cannot(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Some file systems refuse copy_file_range, possibly after copying a first piece;
    the rest is copied through a bounded buffer."""
    real = os.copy_file_range
    calls = 0

    def refusing(src: int, dst: int, count: int, src_off: int, dst_off: int) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError(code, os.strerror(code))
        return real(src, dst, min(count, 30_000), src_off, dst_off)

    monkeypatch.setattr(disk, "_COPY_CHUNK", 100_000)
    monkeypatch.setattr(os, "copy_file_range", refusing)
    body = await spilled(spool)
    env = make_envelope(1500)
    await spool.store(env, body)
    assert await spool.load_body(env.queue_id) == HEAD + TAIL
    assert [e.queue_id for e in spool.recover()] == [env.queue_id]
    assert leftovers(spool) == []


@pytest.mark.parametrize("kernel", [True, False])
async def test_a_tail_shorter_than_written_fails_the_copy_and_leaves_nothing(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch, kernel: bool
) -> None:
    if not kernel:

        def unsupported(*args: int) -> int:
            raise OSError(errno.EXDEV, "cross-device")

        monkeypatch.setattr(os, "copy_file_range", unsupported)
    body = await spilled(spool)
    os.truncate(body.tail.path, body.tail.reserve + 1000)  # the tail lost its end
    with pytest.raises(SpoolError, match="shorter than its tail"):
        await spool.store(make_envelope(1500), body)
    assert os.listdir(spool.directory) == []
    assert not temps.contains(body.tail.path)


async def test_a_full_disk_during_the_copy_is_a_452(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "copy_file_range", full)
    body = await spilled(spool)
    env = make_envelope(1500)
    with pytest.raises(SpoolFullError) as info:
        await spool.store(env, body)
    assert info.value.reply.code == 452
    assert os.listdir(spool.directory) == []
    copy = os.path.join(spool.directory, f"tmp.{os.getpid()}.{env.queue_id}")
    assert not temps.contains(copy) and not temps.contains(body.tail.path)


async def test_an_empty_tail_whose_file_cannot_be_made_fails_the_store(
    spool: DiskSpool,
) -> None:
    spill = spool.spill(12)
    take_name(spill.path)  # the name is taken: never written into
    with pytest.raises(SpoolError, match="store failed"):
        await spool.store(make_envelope(), SpilledBody(b"Subject: x\r\n", spill))
    assert os.listdir(spool.directory) == [os.path.basename(spill.path)]


async def test_open_body_of_a_big_envelope(spool: DiskSpool) -> None:
    """The envelope is longer than the first read: the body still starts after it."""
    env = make_envelope(1500)
    await spool.store(env, HEAD + TAIL)
    stored = await spool.open_body(env.queue_id)
    assert stored.queue_id == env.queue_id
    assert b"".join([c async for c in stored.chunks()]) == HEAD + TAIL


async def test_open_body_of_an_unreadable_entry_is_a_spool_error(spool: DiskSpool) -> None:
    queue_id = make_envelope().queue_id
    (spool.directory / queue_id).mkdir()  # opens, but cannot be read
    with pytest.raises(SpoolError, match="read failed") as info:
        await spool.open_body(queue_id)
    assert not isinstance(info.value, CorruptMessageError)


async def test_a_copy_is_never_made_into_an_existing_file(spool: DiskSpool) -> None:
    """A stale temp file under the copy's name (an earlier process with the same pid)
    is never written into: its octets could end up behind the body."""
    body = await spilled(spool)
    env = make_envelope(1500)
    stale = spool.directory / f"tmp.{os.getpid()}.{env.queue_id}"
    stale.write_bytes(b"\0" * (2 * len(TAIL)))
    with pytest.raises(SpoolError, match="store failed"):
        await spool.store(env, body)
    assert not (spool.directory / env.queue_id).exists()
    assert leftovers(spool) == []
