"""The disk queue: append, read, ack, restart, segment deletion, a torn tail, the cap."""

from __future__ import annotations

from pathlib import Path

from outrider.webhooks.queue import DiskQueue, Position, segment_name


def lines(n: int, start: int = 0) -> list[bytes]:
    return [f'{{"n":{i}}}'.encode() for i in range(start, start + n)]


def test_append_read_ack_and_restart(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path)
    q.append(lines(5))
    assert q.pending == 5
    got, end = q.read(3)
    assert got == lines(3)
    q.ack(end, len(got))
    assert q.pending == 2
    again = DiskQueue(tmp_path)  # a restart: the cursor survives
    assert again.pending == 2
    rest, end = again.read(10)
    assert rest == lines(2, 3)
    again.ack(end, 2)
    assert DiskQueue(tmp_path).pending == 0


def test_unacked_batch_is_read_again_after_restart(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path)
    q.append(lines(4))
    q.read(4)  # sent, never acknowledged
    assert DiskQueue(tmp_path).read(10)[0] == lines(4)


def test_full_segments_roll_and_are_deleted_once_acknowledged(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path, max_bytes=1 << 20)
    q.segment_bytes = 100
    for i in range(10):
        q.append(lines(5, i * 5))
    assert len(q.sizes) > 3
    total: list[bytes] = []
    while q.pending:
        got, end = q.read(7)
        total += got
        q.ack(end, len(got))
    assert total == lines(50)
    assert len(list(tmp_path.glob("*.jsonl"))) <= 1


def test_torn_last_line_is_cut_on_open(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path)
    q.append(lines(2))
    with open(tmp_path / segment_name(1), "ab") as f:
        f.write(b'{"n":2, "tor')
    again = DiskQueue(tmp_path)
    assert again.pending == 2
    assert again.read(10)[0] == lines(2)
    again.append(lines(1, 5))
    assert again.read(10)[0] == [*lines(2), *lines(1, 5)]


def test_corrupt_cursor_resends_everything(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path)
    q.append(lines(3))
    (tmp_path / "cursor").write_text("garbage")
    assert DiskQueue(tmp_path).pending == 3


def test_cap_drops_the_oldest_segment(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path, max_bytes=4096)
    assert q.segment_bytes == 4096
    q.segment_bytes = 512
    for i in range(100):
        q.append(lines(10, i * 10))
    assert q.size <= 4096 + 512
    assert q.dropped > 0 and q.pending + q.dropped == 1000
    got, _ = q.read(1)
    assert got and got[0] != lines(1)[0]  # the oldest are gone
    stale = Position(1, 10)
    q.ack(stale, 10)  # an ack for a dropped batch changes nothing
    assert q.pending + q.dropped == 1000
