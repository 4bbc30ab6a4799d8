"""Reading a stored body back (spool.reader) from a plain file: the octets whole and in
order, however the kernel splits the reads, and the spool's typed errors when the file
is missing, unreadable or shorter than the body it should hold."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from outrider.spool import reader
from outrider.spool.base import CorruptMessageError, SpoolError, UnknownMessageError
from outrider.spool.reader import StoredBody, body_chunks, body_head, body_size

PAD = b"prefix and envelope "
BODY = b"".join(b"line %04d\r\n" % i for i in range(1000))


def stored(tmp_path: Path, body: bytes = BODY, *, size: int | None = None) -> StoredBody:
    path = tmp_path / "0QUEUEID"
    path.write_bytes(PAD + body)
    size = len(body) if size is None else size
    return StoredBody("0QUEUEID", str(path), len(PAD), size, zlib.crc32(body[:size]))


async def read_all(body: StoredBody, chunk_size: int = 4096) -> bytes:
    return b"".join([chunk async for chunk in body.chunks(chunk_size)])


async def test_size_and_head_of_either_form(tmp_path: Path) -> None:
    body = stored(tmp_path)
    assert body_size(BODY) == len(BODY)
    assert body_size(body) == len(BODY)
    assert await body_head(b"in memory", 2) == b"in"
    assert await body_head(body, 12) == BODY[:12]
    assert await body_head(body, 10 * len(BODY)) == BODY  # no more than the body


async def test_chunks_skip_what_lies_before_the_body(tmp_path: Path) -> None:
    body = stored(tmp_path)
    assert await read_all(body) == BODY
    assert [len(c) async for c in body.chunks(4096)][-1] == len(BODY) % 4096


async def test_short_reads_are_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pread`` may return fewer octets than asked; the body still comes whole."""
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, offset: real(fd, min(n, 100), offset))
    body = stored(tmp_path)
    assert await read_all(body) == BODY
    assert await body.head(250) == BODY[:250]


async def test_a_file_shorter_than_its_body_is_damaged(tmp_path: Path) -> None:
    body = stored(tmp_path)
    short = StoredBody(body.queue_id, body.path, body.offset, body.size + 10, body.crc)
    with pytest.raises(CorruptMessageError, match="truncated"):
        await read_all(short)


async def test_a_missing_file_is_an_unknown_message(tmp_path: Path) -> None:
    body = StoredBody("0GONE", str(tmp_path / "0GONE"), 0, 10, 0)
    with pytest.raises(UnknownMessageError):
        await read_all(body)
    with pytest.raises(UnknownMessageError):
        await body.head(5)


async def test_a_file_that_cannot_be_opened_is_a_spool_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    body = StoredBody("0X", str(tmp_path / "file" / "0X"), 0, 10, 0)  # ENOTDIR
    with pytest.raises(SpoolError, match="read failed"):
        await read_all(body)


async def test_a_file_that_cannot_be_read_is_a_spool_error(tmp_path: Path) -> None:
    body = StoredBody("0X", str(tmp_path), 0, 10, 0)  # a directory: EISDIR on read
    with pytest.raises(SpoolError, match="read failed") as info:
        await read_all(body)
    assert not isinstance(info.value, CorruptMessageError)


async def test_body_chunks_passes_the_chunk_size_on(tmp_path: Path) -> None:
    body = stored(tmp_path)
    sizes = [len(c) async for c in body_chunks(body, 1000)]
    assert sum(sizes) == len(BODY) and max(sizes) == 1000
    assert reader.CHUNK_SIZE == 64 * 1024
