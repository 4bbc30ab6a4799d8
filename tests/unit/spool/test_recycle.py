"""Finished messages' files are reused for the next messages (spool.recycle): what moves
into the bin, how a file is taken from it, and that recovery never mistakes one for mail."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from outrider.message.ids import new_queue_id
from outrider.spool import disk, recycle
from outrider.spool.base import SpoolError
from outrider.spool.disk import QUARANTINE_DIR, DiskSpool
from outrider.spool.names import NamePool
from outrider.spool.orphans import find_orphans
from outrider.spool.recycle import CLAIM_PREFIX, RECYCLE_DIR
from tests.unit.spool.conftest import make_envelope

BODY = b"Subject: recycled\r\n\r\nHello.\r\n"


def bin_files(spool: DiskSpool) -> list[str]:
    return sorted(os.listdir(spool.directory / RECYCLE_DIR))


def message_files(spool: DiskSpool) -> list[str]:
    return sorted(name for name in os.listdir(spool.directory) if name != RECYCLE_DIR)


async def reserve(spool: DiskSpool) -> None:
    """Let the committer fill the name pool (it does so when idle)."""
    spool.release_queue_id(spool.new_queue_id())
    for _ in range(200):
        if spool.stats.reserved:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no names reserved")


async def test_a_removed_message_moves_into_the_bin_under_its_queue_id(
    spool: DiskSpool,
) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    inode = (spool.directory / env.queue_id).stat().st_ino
    await spool.remove(env.queue_id)
    assert message_files(spool) == []
    assert bin_files(spool) == [env.queue_id]
    binned = (spool.directory / RECYCLE_DIR / env.queue_id).stat()
    assert binned.st_ino == inode
    assert binned.st_size == 0  # its space is free at once, as after an unlink
    assert spool.stats.binned == 1 and spool.stats.removes == 1


async def test_reserved_names_reuse_binned_files_emptied_and_freshly_stamped(
    tmp_path: Path,
) -> None:
    spool = DiskSpool(tmp_path / "spool")
    try:
        finished = []
        for _ in range(3):
            env = make_envelope()
            await spool.store(env, BODY)
            finished.append(env.queue_id)
        inodes = {(spool.directory / q).stat().st_ino for q in finished}
        for queue_id in finished:
            await spool.remove(queue_id)
        before = time.time()
        await reserve(spool)
        assert bin_files(spool) == []  # all three taken
        assert spool.stats.recycled == 3
        reserved = [spool.directory / name for name in message_files(spool)]
        reused = [p for p in reserved if p.stat().st_ino in inodes]
        assert len(reused) == 3
        for path in reused:
            info = path.stat()
            assert info.st_size == 0
            assert info.st_mtime >= before - 0.05  # recovery's "recent reservation" test
            assert path.name not in finished

        # A store into a reused name writes its own message and nothing of the old one.
        queue_id = ""
        while not queue_id or (spool.directory / queue_id).stat().st_ino not in inodes:
            queue_id = spool.new_queue_id()
        env = make_envelope(queue_id=queue_id)
        await spool.store(env, b"x" * 3)
        assert await spool.load_body(queue_id) == b"x" * 3
        assert spool.stats.in_place >= 1
    finally:
        await spool.close()


async def test_a_store_without_a_reserved_name_writes_into_a_binned_file(
    spool: DiskSpool,
) -> None:
    done = make_envelope()
    await spool.store(done, BODY)
    await spool.remove(done.queue_id)
    inode = (spool.directory / RECYCLE_DIR / done.queue_id).stat().st_ino
    env = make_envelope()  # its id is not a reserved name: stored through a temp file
    await spool.store(env, b"second body\r\n")
    assert (spool.directory / env.queue_id).stat().st_ino == inode
    assert (spool.directory / env.queue_id).stat().st_nlink == 1  # the claim name is gone
    assert bin_files(spool) == []
    assert await spool.load_body(env.queue_id) == b"second body\r\n"
    assert [e.queue_id for e in DiskSpool(spool.directory).recover()] == [env.queue_id]


async def test_a_full_bin_unlinks_and_counts_again_later(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recycle, "CAP", 2)
    monkeypatch.setattr(recycle, "_RECHECK", 1)
    ids = []
    for _ in range(5):
        env = make_envelope()
        await spool.store(env, BODY)
        ids.append(env.queue_id)
    for queue_id in ids[:4]:
        await spool.remove(queue_id)
    assert bin_files(spool) == sorted(ids[:2])
    assert message_files(spool) == [ids[4]]
    # Room made by a taker is found again after _RECHECK more removals.
    os.unlink(spool.directory / RECYCLE_DIR / ids[0])
    await spool.remove(ids[4])
    assert sorted(bin_files(spool)) == sorted([ids[1], ids[4]])
    assert spool.stats.binned == 3 and spool.stats.removes == 5


async def test_removing_a_message_already_gone_is_still_fine(spool: DiskSpool) -> None:
    await spool.remove(make_envelope().queue_id)
    assert spool.stats.removes == 1 and spool.stats.binned == 0


async def test_a_deleted_bin_is_made_again(spool: DiskSpool) -> None:
    first, second = make_envelope(), make_envelope()
    for env in (first, second):
        await spool.store(env, BODY)
    await spool.remove(first.queue_id)
    os.unlink(spool.directory / RECYCLE_DIR / first.queue_id)
    os.rmdir(spool.directory / RECYCLE_DIR)
    await spool.remove(second.queue_id)  # unlinked; the bin is back for the next one
    assert message_files(spool) == []
    assert (spool.directory / RECYCLE_DIR).is_dir()


async def test_without_reuse_files_are_unlinked_and_made(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "spool", reuse_files=False)
    try:
        env = make_envelope()
        await spool.store(env, BODY)
        await spool.remove(env.queue_id)
        assert os.listdir(spool.directory) == []
    finally:
        await spool.close()


async def test_adoption_never_takes_a_reused_name_holding_an_old_message(
    spool: DiskSpool,
) -> None:
    old = make_envelope()
    await spool.store(old, BODY)
    content = (spool.directory / old.queue_id).read_bytes()
    await spool.remove(old.queue_id)
    (spool.directory / new_queue_id()).write_bytes(content)
    assert find_orphans(spool.directory, lambda name: False, 0.0, now=time.time() + 60) == []


def test_take_claims_each_file_once_and_links_it_under_a_fresh_id(tmp_path: Path) -> None:
    directory = tmp_path / RECYCLE_DIR
    directory.mkdir()
    for name in ("A1", "A2"):
        (directory / name).write_bytes(b"old message")
    (directory / f"{CLAIM_PREFIX}1.X").write_bytes(b"someone else's claim")
    made = recycle.Taker(str(tmp_path)).take(5, new_queue_id, lambda: False)
    assert len(made) == 2
    for name in made:
        assert (tmp_path / name).read_bytes() == b""
    assert os.listdir(directory) == [f"{CLAIM_PREFIX}1.X"]  # claims are never taken


def test_take_never_replaces_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / RECYCLE_DIR).mkdir()
    (tmp_path / RECYCLE_DIR / "OLD").write_bytes(b"old")
    (tmp_path / "TAKEN").write_bytes(b"a stored message")
    made = recycle.Taker(str(tmp_path)).take(1, lambda: "TAKEN", lambda: False)
    assert made == []
    assert (tmp_path / "TAKEN").read_bytes() == b"a stored message"
    assert not [n for n in os.listdir(tmp_path / RECYCLE_DIR) if n.startswith(CLAIM_PREFIX)]


def test_take_stops_when_asked(tmp_path: Path) -> None:
    (tmp_path / RECYCLE_DIR).mkdir()
    for name in ("A1", "A2", "A3"):
        (tmp_path / RECYCLE_DIR / name).write_bytes(b"old")
    assert len(recycle.Taker(str(tmp_path)).take(3, new_queue_id, lambda: True)) == 1


def test_take_without_a_bin_takes_nothing(tmp_path: Path) -> None:
    assert recycle.Taker(str(tmp_path)).take(3, new_queue_id, lambda: False) == []


def test_the_pool_makes_new_files_for_what_the_bin_lacks(tmp_path: Path) -> None:
    (tmp_path / RECYCLE_DIR).mkdir()
    (tmp_path / RECYCLE_DIR / "OLD").write_bytes(b"old")
    pool = NamePool(str(tmp_path), taker=recycle.Taker(str(tmp_path)))
    made = pool.create(3, lambda: False)
    assert len(made) == 3 and pool.recycled == 1
    assert all((tmp_path / name).stat().st_size == 0 for name in made)


def test_clean_removes_claims_of_processes_gone_and_keeps_the_rest(tmp_path: Path) -> None:
    directory = tmp_path / RECYCLE_DIR
    directory.mkdir()
    mine = f"{CLAIM_PREFIX}{os.getpid()}.ID1"
    for name in ("WAITING", mine, f"{CLAIM_PREFIX}999999999.ID2", f"{CLAIM_PREFIX}x.ID3"):
        (directory / name).write_bytes(b"old")
    alive = {os.getpid()}
    assert recycle.clean(str(tmp_path), alive.__contains__) == 2
    assert sorted(os.listdir(directory)) == sorted(["WAITING", mine])  # in progress
    assert recycle.clean(str(tmp_path / "nowhere"), alive.__contains__) == 0


def test_a_claim_is_emptied_private_and_open_for_writing(tmp_path: Path) -> None:
    directory = tmp_path / RECYCLE_DIR
    directory.mkdir()
    (directory / "OLD").write_bytes(b"old message")
    taker = recycle.Taker(str(tmp_path))
    claimed = taker.claim("NEWID")
    assert claimed is not None
    path, fd = claimed
    try:
        assert path == str(directory / f"{CLAIM_PREFIX}{os.getpid()}.NEWID")
        assert os.fstat(fd).st_size == 0
        os.write(fd, b"new")
    finally:
        os.close(fd)
    assert (directory / f"{CLAIM_PREFIX}{os.getpid()}.NEWID").read_bytes() == b"new"
    assert taker.claim("OTHER") is None  # the bin is empty now


def test_a_claim_skips_names_others_took_since_the_listing(tmp_path: Path) -> None:
    directory = tmp_path / RECYCLE_DIR
    directory.mkdir()
    for name in ("A", "B"):
        (directory / name).write_bytes(b"old")
    taker = recycle.Taker(str(tmp_path))
    first = taker.claim("ID1")  # lists A and B, takes one
    assert first is not None
    os.close(first[1])
    left = [n for n in os.listdir(directory) if not n.startswith(CLAIM_PREFIX)]
    os.unlink(directory / left[0])  # another process takes the other
    assert taker.claim("ID2") is None
    (directory / "C").write_bytes(b"old")  # listed afresh once the old listing is used up
    third = taker.claim("ID3")
    assert third is not None
    os.close(third[1])


async def test_recovery_never_yields_binned_files_and_keeps_them(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "spool")
    done, queued = make_envelope(), make_envelope()
    await spool.store(done, BODY)
    await spool.store(queued, BODY)
    await spool.remove(done.queue_id)
    await spool.close()
    (tmp_path / "spool" / RECYCLE_DIR / f"{CLAIM_PREFIX}999999999.{new_queue_id()}").write_bytes(
        b"x"
    )

    again = DiskSpool(tmp_path / "spool")
    recovered = [env.queue_id for env in again.recover()]
    assert recovered == [queued.queue_id]
    assert bin_files(again) == [done.queue_id]  # waiting for reuse; the claim is gone
    await again.close()


async def test_a_reused_name_whose_truncation_was_lost_is_quarantined(tmp_path: Path) -> None:
    """A power loss on a file system that does not order metadata can bring a reused file
    back with its old message under its new name: never delivered as that name."""
    spool = DiskSpool(tmp_path / "spool")
    old = make_envelope()
    await spool.store(old, BODY)
    content = (spool.directory / old.queue_id).read_bytes()
    await spool.remove(old.queue_id)
    await spool.close()
    directory = tmp_path / "spool"
    new_name = new_queue_id()
    # What a power loss can leave: the truncations undone, the new name kept.
    (directory / new_name).write_bytes(content)
    os.unlink(directory / RECYCLE_DIR / old.queue_id)

    again = DiskSpool(directory)
    assert list(again.recover()) == []
    assert os.listdir(directory / QUARANTINE_DIR) == [new_name]
    await again.close()


async def test_a_reused_name_taken_since_the_start_is_left_to_its_taker(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "spool")
    old = make_envelope()
    await spool.store(old, BODY)
    await spool.remove(old.queue_id)
    started_ns = time.time_ns() - 1_000_000_000  # recovery of a daemon started 1 s ago
    (made,) = recycle.Taker(str(spool.directory)).take(1, new_queue_id, lambda: False)
    assert list(spool.recover(started_ns=started_ns)) == []
    assert (spool.directory / made).exists()  # a receiver's reservation: left alone
    await spool.close()


async def test_only_files_go_into_the_bin(spool: DiskSpool) -> None:
    queue_id = make_envelope().queue_id
    (spool.directory / queue_id).mkdir()
    with pytest.raises(SpoolError, match="remove failed"):
        await spool.remove(queue_id)
    assert (spool.directory / queue_id).is_dir()
    assert bin_files(spool) == []


async def test_a_bin_that_is_not_a_directory_means_unlinking(spool: DiskSpool) -> None:
    (spool.directory / RECYCLE_DIR).write_bytes(b"")
    env = make_envelope()
    await spool.store(env, BODY)
    await spool.remove(env.queue_id)
    assert message_files(spool) == []
    assert spool.stats.binned == 0


async def test_the_bin_is_private(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    await spool.remove(env.queue_id)
    assert (spool.directory / RECYCLE_DIR).stat().st_mode & 0o777 == 0o700
    recycle._make_dir(str(spool.directory / RECYCLE_DIR))  # there already: no error


def test_a_full_bin_unlinks_exactly_recheck_removals_before_counting_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recycle, "CAP", 1)
    monkeypatch.setattr(recycle, "_RECHECK", 3)
    bin_ = recycle.Bin(str(tmp_path))
    for name in "ABCDEFG":
        (tmp_path / name).write_bytes(b"old")
    assert bin_.put(str(tmp_path / "A"), "A")
    os.unlink(tmp_path / RECYCLE_DIR / "A")  # taken: room again, unseen until counted
    assert bin_.put(str(tmp_path / "B"), "B")  # counted: room for one
    assert not bin_.put(str(tmp_path / "C"), "C")  # counted: full
    os.unlink(tmp_path / RECYCLE_DIR / "B")  # room again, unseen for 3 removals
    moved = [bin_.put(str(tmp_path / n), n) for n in "DEF"]
    assert moved == [False, False, False]
    assert bin_.put(str(tmp_path / "G"), "G")  # counted again after the third


def test_the_bin_is_counted_once_per_cap_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recycle, "CAP", 3)
    calls = []
    real = recycle.count

    def counting(directory: str) -> int:
        calls.append(directory)
        return real(directory)

    monkeypatch.setattr(recycle, "count", counting)
    bin_ = recycle.Bin(str(tmp_path))
    for name in "ABC":
        (tmp_path / name).write_bytes(b"old")
        assert bin_.put(str(tmp_path / name), name)
    assert len(calls) == 1
    assert recycle.count(str(tmp_path / "missing")) == 0
    assert (tmp_path / "missing").is_dir()  # a missing bin is made as it is counted


def test_clean_counts_only_what_it_removed_and_reads_every_claim(tmp_path: Path) -> None:
    directory = tmp_path / RECYCLE_DIR
    directory.mkdir()
    names = [f"{CLAIM_PREFIX}{pid}.ID{pid}" for pid in (101, 102, 103, 104)]
    for name in names:
        (directory / name).write_bytes(b"old")
    (directory / f"{CLAIM_PREFIX}105.STUCK").mkdir()  # cannot be unlinked
    listed = [n for n in os.listdir(directory) if n in names]  # scandir's order
    live = listed[0]  # read before at least two others: they must still be removed
    removed = recycle.clean(str(tmp_path), lambda pid: f"{CLAIM_PREFIX}{pid}.ID{pid}" == live)
    assert removed == 3  # not the live one, not the directory
    assert sorted(os.listdir(directory)) == sorted([live, f"{CLAIM_PREFIX}105.STUCK"])


def test_clean_removes_a_claim_whose_pid_it_cannot_read(tmp_path: Path) -> None:
    directory = tmp_path / RECYCLE_DIR
    directory.mkdir()
    (directory / f"{CLAIM_PREFIX}x.ID").write_bytes(b"old")
    assert recycle.clean(str(tmp_path), disk._pid_alive) == 1  # not "pid 1, alive"


def test_a_taker_starts_at_its_own_place_in_the_listing(tmp_path: Path) -> None:
    directory = tmp_path / RECYCLE_DIR
    directory.mkdir()
    for name in ("A", "B", "C"):
        (directory / name).write_bytes(b"old")
    listed = [n for n in os.listdir(directory)]
    taker = recycle.Taker(str(tmp_path))
    taker._pid = 4  # 4 % 3: the second name listed
    claimed = taker.claim("NEW")
    assert claimed is not None
    os.close(claimed[1])
    assert sorted(os.listdir(directory)) == sorted(
        [n for n in listed if n != listed[1]] + [f"{CLAIM_PREFIX}4.NEW"]
    )


def test_a_claim_lists_again_after_losing_a_file(tmp_path: Path) -> None:
    directory = tmp_path / RECYCLE_DIR
    directory.mkdir()
    (directory / "A").write_bytes(b"old")
    taker = recycle.Taker(str(tmp_path))
    assert taker._next() == "A"
    taker._listed.append("A")  # listed, then taken by another process
    os.unlink(directory / "A")
    (directory / "B").write_bytes(b"old")
    claimed = taker.claim("NEW")
    assert claimed is not None
    os.close(claimed[1])


def test_a_claim_of_something_it_cannot_open_gives_up_quietly(tmp_path: Path) -> None:
    directory = tmp_path / RECYCLE_DIR
    directory.mkdir()
    (directory / "ADIR").mkdir()
    assert recycle.Taker(str(tmp_path)).claim("NEW") is None


def test_take_goes_on_after_a_name_it_could_not_link(tmp_path: Path) -> None:
    (tmp_path / RECYCLE_DIR).mkdir()
    for name in ("OLD1", "OLD2", "OLD3"):
        (tmp_path / RECYCLE_DIR / name).write_bytes(b"old")
    (tmp_path / "TAKEN").write_bytes(b"a stored message")
    ids = iter(["TAKEN", "FRESH1", "FRESH2"])
    made = recycle.Taker(str(tmp_path)).take(1, lambda: next(ids), lambda: False)
    assert made == ["FRESH1"]  # exactly the one asked for, after the failed link
    assert len(os.listdir(tmp_path / RECYCLE_DIR)) == 1


async def test_a_file_the_bin_cannot_take_is_unlinked(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    (spool.directory / RECYCLE_DIR).mkdir()
    (spool.directory / RECYCLE_DIR / env.queue_id).mkdir()  # rename onto it: EISDIR
    await spool.remove(env.queue_id)
    assert message_files(spool) == []
    assert spool.stats.binned == 0
