"""Temp files in the spool directory (spool.temps): the in-flight set recovery consults,
and writing all of a buffer when ``pwrite`` writes less than asked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from outrider.spool import temps


def test_the_in_flight_set_holds_what_was_added_until_discarded(tmp_path: Path) -> None:
    path = str(tmp_path / "tmp.1.x")
    assert not temps.contains(path)
    temps.add(path)
    assert temps.contains(path)
    assert not temps.contains(path + "y")
    temps.discard(path)
    assert not temps.contains(path)
    temps.discard(path)  # twice: harmless


def test_pwrite_all_writes_everything_when_pwrite_writes_a_little_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.pwrite
    writes: list[tuple[int, int]] = []

    def short(fd: int, data: memoryview, offset: int) -> int:
        writes.append((offset, len(data)))
        return real(fd, data[:3], offset)

    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        monkeypatch.setattr(os, "pwrite", short)
        temps.pwrite_all(fd, b"0123456789", 5)
        temps.pwrite_all(fd, b"", 0)  # nothing to write: no call
    finally:
        monkeypatch.undo()
        os.close(fd)
    assert path.read_bytes() == b"\0" * 5 + b"0123456789"
    assert writes == [(5, 10), (8, 7), (11, 4), (14, 1)]
