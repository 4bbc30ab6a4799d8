"""The pool of reserved names itself (spool.names.NamePool), without a spool around it:
which id a store gets, when the committer is asked for more, and what is removed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from outrider.message.ids import is_queue_id
from outrider.spool import names as names_module
from outrider.spool.names import LOW, TARGET, NamePool


def pool_with(tmp_path: Path, count: int) -> tuple[NamePool, list[str]]:
    pool = NamePool(str(tmp_path))
    names = pool.create(count, lambda: False)
    pool.add(names)
    return pool, names


def test_an_empty_pool_hands_out_a_fresh_id_and_asks_for_names(tmp_path: Path) -> None:
    pool = NamePool(str(tmp_path))
    assert not pool.wanted
    queue_id = pool.take()
    assert is_queue_id(queue_id)
    assert pool.wanted
    assert not pool.claim(queue_id)  # not reserved: stored the usual way
    assert not pool.holds(queue_id)
    assert os.listdir(tmp_path) == []


def test_reserved_names_are_handed_out_oldest_first(tmp_path: Path) -> None:
    pool, names = pool_with(tmp_path, 3)
    assert [pool.take() for _ in range(3)] == names


def test_more_names_are_wanted_only_once_fewer_than_low_remain(tmp_path: Path) -> None:
    pool, _ = pool_with(tmp_path, LOW + 1)
    pool.take()  # LOW left: enough
    assert not pool.wanted
    pool.take()  # LOW - 1 left
    assert pool.wanted


def test_a_taken_name_is_claimed_once(tmp_path: Path) -> None:
    pool, [name] = pool_with(tmp_path, 1)
    assert pool.holds(name)  # ready
    assert not pool.claim(name)  # not handed out yet
    assert pool.take() == name
    assert pool.holds(name)  # taken
    assert pool.claim(name)
    assert not pool.claim(name)
    assert not pool.holds(name)  # stored into: no longer the pool's


def test_a_name_given_back_is_handed_out_after_the_others(tmp_path: Path) -> None:
    pool, names = pool_with(tmp_path, 2)
    first = pool.take()
    pool.give_back(first)
    assert [pool.take(), pool.take()] == [names[1], first]
    pool.give_back("not-one-of-ours")  # neither reserved nor taken: ignored
    assert not pool.holds("not-one-of-ours")


def test_missing_counts_up_to_the_target(tmp_path: Path) -> None:
    pool = NamePool(str(tmp_path))
    assert pool.missing() == TARGET
    pool.add(pool.create(5, lambda: False))
    assert pool.missing() == TARGET - 5
    pool.add(pool.create(TARGET, lambda: False))
    assert pool.missing() == 0  # never negative


def test_create_makes_empty_private_files_not_yet_ready(tmp_path: Path) -> None:
    pool = NamePool(str(tmp_path))
    names = pool.create(4, lambda: False)
    assert len(set(names)) == 4 and all(is_queue_id(n) for n in names)
    assert sorted(os.listdir(tmp_path)) == sorted(names)
    for name in names:
        info = (tmp_path / name).stat()
        assert info.st_size == 0
        assert stat.S_IMODE(info.st_mode) == 0o600
    assert not pool.holds(names[0])  # not durable until add()
    assert pool.missing() == TARGET


def test_create_stops_when_other_work_arrives(tmp_path: Path) -> None:
    pool = NamePool(str(tmp_path))
    calls = 0

    def stop() -> bool:
        nonlocal calls
        calls += 1
        return calls == 3

    assert len(pool.create(10, stop)) == 3
    assert len(os.listdir(tmp_path)) == 3


def test_create_never_takes_over_an_existing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids are unique, but a name already in the directory (a stored message) must not
    become a reservation to write into."""
    (tmp_path / "0STORED").write_bytes(b"a stored message")
    monkeypatch.setattr(names_module, "new_queue_id", lambda: "0STORED")
    pool = NamePool(str(tmp_path))
    assert pool.create(3, lambda: False) == []
    assert (tmp_path / "0STORED").read_bytes() == b"a stored message"


def test_create_stops_quietly_when_files_cannot_be_made(tmp_path: Path) -> None:
    pool = NamePool(str(tmp_path / "gone"))
    assert pool.create(5, lambda: False) == []


def test_discard_all_removes_ready_and_taken_names_and_counts_them(tmp_path: Path) -> None:
    pool, names = pool_with(tmp_path, 5)
    taken = pool.take()
    (tmp_path / names[1]).unlink()  # already gone (another process's recovery)
    assert pool.discard_all() == 4
    assert os.listdir(tmp_path) == []
    assert not pool.holds(taken) and pool.missing() == TARGET
    assert pool.discard_all() == 0
