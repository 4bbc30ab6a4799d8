"""Queue ids: unique across processes, sortable by time, filename-safe."""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import pytest

from outrider.message.ids import (
    ALPHABET,
    QUEUE_ID_LENGTH,
    is_queue_id,
    new_queue_id,
    queue_id_time,
)


def _batch(count: int) -> list[str]:
    return [new_queue_id() for _ in range(count)]


def test_shape_is_short_and_filename_safe() -> None:
    qid = new_queue_id()
    assert len(qid) == QUEUE_ID_LENGTH == 19
    assert set(qid) <= set(ALPHABET)
    assert qid == qid.upper()  # safe on case-insensitive file systems
    assert is_queue_id(qid)
    assert not is_queue_id(qid.lower())
    assert not is_queue_id(qid[:-1])
    assert not is_queue_id("../" + qid[3:])


def test_ids_of_one_process_are_unique_and_increasing() -> None:
    ids = _batch(50_000)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_alphabet_sorts_like_numbers() -> None:
    assert list(ALPHABET) == sorted(ALPHABET)


def test_ids_sort_by_time_across_calls() -> None:
    first = new_queue_id()
    time.sleep(0.002)
    second = new_queue_id()
    assert first < second
    assert queue_id_time(first) <= queue_id_time(second)
    assert abs(queue_id_time(second) - time.time()) < 5
    with pytest.raises(ValueError):
        queue_id_time("nope")


def _produce(count: int, out: Any) -> None:
    out.put(_batch(count))


def test_unique_across_processes() -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_produce, args=(20_000, out)) for _ in range(2)]
    for proc in procs:
        proc.start()
    ours = _batch(20_000)
    results: list[list[str]] = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    out.close()
    out.join_thread()
    everything = [*results[0], *results[1], *ours]
    assert len(set(everything)) == len(everything)
    # each process has its own constant pid field
    fields = [{qid[11:16] for qid in ids} for ids in (*results, ours)]
    assert all(len(f) == 1 for f in fields)
    assert len(set.union(*fields)) == 3


def test_forked_child_gets_its_own_pid_field() -> None:
    parent_id = new_queue_id()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write_fd, "".join(_batch(1000)).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read().decode()
    os.waitpid(pid, 0)
    child_ids = [data[i : i + QUEUE_ID_LENGTH] for i in range(0, len(data), QUEUE_ID_LENGTH)]
    assert len(child_ids) == 1000
    assert child_ids[0][11:16] != parent_id[11:16]
    assert not set(child_ids) & set(_batch(1000))
