"""The schedule snapshot (issue 12): its file format, and recovery that lists the files
of its entries instead of reading them."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import marshal
import os
import stat
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from outrider.message import packed
from outrider.message.envelope import (
    Envelope,
    Notify,
    RcptStatus,
    Recipient,
    Ret,
    Source,
)
from outrider.spool import snapshot
from outrider.spool.base import SpoolClosedError, SpoolError
from outrider.spool.disk import QUARANTINE_DIR, DiskSpool
from outrider.spool.snapshot import (
    SNAPSHOT_NAME,
    TEMP_NAME,
    SnapshotError,
    decode_entry,
    encode_entry,
    read_snapshot,
    reconcile,
    remove_snapshot,
    take_snapshot,
    write_snapshot,
)
from tests.unit.spool.conftest import make_envelope

BODY = b"Subject: snapshot\r\n\r\nhello\r\n"


def full_envelope(queue_id: str = "Q0000000000000001") -> Envelope:
    """An envelope with every field away from its default."""
    return Envelope(
        queue_id=queue_id,
        sender="s\u00e9nder@example.org",
        recipients=[
            Recipient(
                address="a@example.net",
                orcpt="rfc822;a@example.net",
                notify=Notify.SUCCESS | Notify.DELAY,
                status=RcptStatus.PENDING,
                attempts=3,
                next_attempt=1_800_000_000.25,
                last_reply="451 4.7.1 try later",
                last_mta="mx.example.net",
                relayed_owed=False,
            ),
            Recipient(
                address="b@example.net",
                notify=Notify.NEVER,
                status=RcptStatus.DELIVERED,
                attempts=1,
                last_reply="250 ok",
                relayed_owed=True,
            ),
            Recipient(address="c@example.net", status=RcptStatus.BOUNCED, attempts=2),
        ],
        received_at=1_799_999_999.5,
        size=12345,
        ret=Ret.FULL,
        envid="ENV-9",
        smtputf8=True,
        body_8bit=True,
        body_binary=True,
        client_address="192.0.2.1",
        helo="client.example.org",
        job_id="job-7",
        msg_id="<m@example.org>",
        vmta="pool-a",
        source=Source.API,
        auth_user="alice",
        listener="0.0.0.0:587",
        vmta_request="vmta-x",
        listener_vmta="vmta-y",
        extra={"forwarded": "0,1", "k": "v"},
        delay_warned=True,
        notices="DS",
    )


def snapshot_bytes(envelopes: list[Envelope]) -> bytes:
    out = io.BytesIO()
    out.write(snapshot._header(len(envelopes)))
    for env in envelopes:
        out.write(encode_entry(env))
    out.write(snapshot._TRAILER.pack(snapshot.END, len(envelopes)))
    return out.getvalue()


# --- the format ----------------------------------------------------------------------------


def test_every_envelope_and_recipient_field_is_in_the_snapshot() -> None:
    # the dumped form has one slot per field, but for four booleans folded into one
    # flags slot and the recipients, which follow with one slot per recipient field
    dumped = marshal.loads(packed.dump(full_envelope()))
    assert len(dataclasses.fields(Envelope)) == packed._FIELDS + 3 + 1
    assert len(dataclasses.fields(Recipient)) == packed._RCPT_FIELDS
    assert len(dumped) == packed._FIELDS + 3 * packed._RCPT_FIELDS


@pytest.mark.parametrize("env", [full_envelope(), make_envelope(3), make_envelope(0)])
def test_an_entry_round_trips_exactly(env: Envelope) -> None:
    entry = encode_entry(env)
    length, crc = struct.unpack_from("<II", entry)
    assert (length, crc) == (len(entry) - 8, zlib.crc32(entry[8:]))
    back = decode_entry(entry[8:])
    assert back == env
    assert [dataclasses.astuple(r) for r in back.recipients] == [
        dataclasses.astuple(r) for r in env.recipients
    ]
    assert (back.delay_warned, back.notices) == (env.delay_warned, env.notices)


def test_no_extra_stays_the_shared_empty_mapping() -> None:
    back = decode_entry(encode_entry(make_envelope())[8:])
    assert back.extra is make_envelope().extra


def test_repeated_strings_are_shared_as_spool_recovery_shares_them() -> None:
    a, b = (decode_entry(encode_entry(full_envelope(q))[8:]) for q in ("QA", "QB"))
    assert a.sender is b.sender
    assert a.recipients[0].last_reply is b.recipients[0].last_reply


def test_a_file_round_trips(tmp_path: Path) -> None:
    envs = [full_envelope(f"Q{i:04d}") for i in range(50)] + [make_envelope(2)]
    size = write_snapshot(tmp_path, envs, len(envs))
    path = tmp_path / SNAPSHOT_NAME
    assert path.stat().st_size == size
    assert not (tmp_path / TEMP_NAME).exists()
    with open(path, "rb") as src:
        back = read_snapshot(src)
    assert list(back) == [e.queue_id for e in envs]
    assert [decode_entry(payload) for payload in back.values()] == envs


def test_an_empty_queue_gives_a_valid_empty_snapshot(tmp_path: Path) -> None:
    write_snapshot(tmp_path, [], 0)
    assert take_snapshot(tmp_path) == {}


@pytest.mark.parametrize("cut", [0, 1, 17, 21, 30, -13, -1])
def test_a_torn_file_is_refused(cut: int) -> None:
    data = snapshot_bytes([full_envelope(), make_envelope()])
    with pytest.raises(SnapshotError):
        read_snapshot(io.BytesIO(data[:cut]))


def test_every_cut_is_refused() -> None:
    data = snapshot_bytes([full_envelope(), make_envelope()])
    for cut in range(len(data)):
        with pytest.raises(SnapshotError):
            read_snapshot(io.BytesIO(data[:cut]))


def test_a_damaged_entry_is_refused_by_its_crc() -> None:
    data = bytearray(snapshot_bytes([full_envelope(), make_envelope()]))
    data[40] ^= 0x01  # inside the first entry's payload
    with pytest.raises(SnapshotError, match="entry checksum"):
        read_snapshot(io.BytesIO(bytes(data)))


def test_a_damaged_header_is_refused_by_its_crc() -> None:
    data = bytearray(snapshot_bytes([make_envelope()]))
    data[6] ^= 0x01  # the count
    with pytest.raises(SnapshotError, match="header checksum"):
        read_snapshot(io.BytesIO(bytes(data)))


def _with_header(data: bytes, **fields: int | bytes) -> bytes:
    magic, version, marshal_version, count = snapshot._HEADER.unpack_from(data)
    values = {"magic": magic, "version": version, "marshal": marshal_version, "count": count}
    values.update(fields)
    head = snapshot._HEADER.pack(
        values["magic"], values["version"], values["marshal"], values["count"]
    )
    rest = data[snapshot._HEADER.size + 4 :]
    return head + struct.pack("<I", zlib.crc32(head)) + rest


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"magic": b"ORSP"}, "not a schedule snapshot"),
        ({"version": snapshot.VERSION + 1}, "format version"),
        ({"marshal": marshal.version + 1}, "marshal version"),
        ({"count": 2}, "entry length|cut short|checksum"),
        ({"count": 0}, "bad trailer"),
    ],
)
def test_wrong_magic_version_or_count_is_refused(fields: dict[str, int], message: str) -> None:
    data = _with_header(snapshot_bytes([make_envelope()]), **fields)
    with pytest.raises(SnapshotError, match=message):
        read_snapshot(io.BytesIO(data))


def test_an_entry_of_the_largest_length_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    data = snapshot_bytes([make_envelope()])
    length = len(encode_entry(make_envelope())) - snapshot._ENTRY.size
    monkeypatch.setattr(snapshot, "_MAX_ENTRY", length)  # the limit itself is allowed
    assert len(read_snapshot(io.BytesIO(data))) == 1
    monkeypatch.setattr(snapshot, "_MAX_ENTRY", length - 1)
    with pytest.raises(SnapshotError, match="entry length"):
        read_snapshot(io.BytesIO(data))


@pytest.mark.parametrize(
    ("end", "extra"), [(b"ORSX", 0), (snapshot.END, 1)], ids=["marker", "count"]
)
def test_a_trailer_with_a_wrong_marker_or_count_is_refused(end: bytes, extra: int) -> None:
    data = snapshot_bytes([make_envelope()])
    data = data[: -snapshot._TRAILER.size] + snapshot._TRAILER.pack(end, 1 + extra)
    with pytest.raises(SnapshotError, match="bad trailer"):
        read_snapshot(io.BytesIO(data))


def test_bytes_after_the_trailer_are_refused() -> None:
    with pytest.raises(SnapshotError, match="after the trailer"):
        read_snapshot(io.BytesIO(snapshot_bytes([make_envelope()]) + b"\0"))


def test_a_payload_that_is_no_envelope_is_refused() -> None:
    with pytest.raises(SnapshotError):
        decode_entry(marshal.dumps((1, 2, 3)))
    with pytest.raises(SnapshotError):
        decode_entry(marshal.dumps(("Q1", *range(18))))  # the right length, wrong values
    with pytest.raises(SnapshotError):
        decode_entry(b"\xff")


def test_an_entry_without_a_queue_id_refuses_the_file() -> None:
    out = io.BytesIO()
    out.write(snapshot._header(1))
    payload = marshal.dumps((1, 2, 3))
    out.write(struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
    out.write(snapshot._TRAILER.pack(snapshot.END, 1))
    with pytest.raises(SnapshotError, match="bad entry"):
        read_snapshot(io.BytesIO(out.getvalue()))


def test_a_write_given_fewer_envelopes_than_counted_leaves_the_old_snapshot(
    tmp_path: Path,
) -> None:
    write_snapshot(tmp_path, [make_envelope()], 1)
    before = (tmp_path / SNAPSHOT_NAME).read_bytes()
    with pytest.raises(ValueError):
        write_snapshot(tmp_path, [make_envelope()], 2)
    assert (tmp_path / SNAPSHOT_NAME).read_bytes() == before
    assert not (tmp_path / TEMP_NAME).exists()


def test_the_temp_is_written_in_the_directory_beside_the_snapshot(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def envelopes() -> Iterator[Envelope]:
        yield make_envelope()
        seen.append(sorted(os.listdir(tmp_path)))  # while the file is being written
        yield make_envelope()

    write_snapshot(tmp_path, envelopes(), 2)
    assert seen == [[TEMP_NAME]]
    assert os.listdir(tmp_path) == [SNAPSHOT_NAME]


def test_a_longer_leftover_temp_is_truncated_not_overwritten_in_place(tmp_path: Path) -> None:
    (tmp_path / TEMP_NAME).write_bytes(b"x" * 100_000)  # a stop cut short while writing
    env = make_envelope()
    size = write_snapshot(tmp_path, [env], 1)
    assert (tmp_path / SNAPSHOT_NAME).stat().st_size == size
    taken = take_snapshot(tmp_path)
    assert taken is not None and list(taken) == [env.queue_id]


def test_the_snapshot_is_readable_by_its_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_snapshot(tmp_path, [make_envelope()], 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / SNAPSHOT_NAME).stat().st_mode) == 0o600


# --- taking and removing -------------------------------------------------------------------


def test_take_removes_the_snapshot_and_a_leftover_temp(tmp_path: Path) -> None:
    env = full_envelope()
    write_snapshot(tmp_path, [env], 1)
    (tmp_path / TEMP_NAME).write_bytes(b"a stop cut short")
    taken = take_snapshot(tmp_path)
    assert taken is not None and list(taken) == [env.queue_id]
    assert decode_entry(taken[env.queue_id]) == env
    assert sorted(os.listdir(tmp_path)) == []
    assert take_snapshot(tmp_path) is None  # used once only


def test_take_without_a_snapshot_is_none(tmp_path: Path) -> None:
    assert take_snapshot(tmp_path) is None


def test_an_invalid_snapshot_warns_once_and_is_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / SNAPSHOT_NAME).write_bytes(snapshot_bytes([make_envelope()])[:-3])
    with caplog.at_level(logging.WARNING, logger="outrider.spool"):
        assert take_snapshot(tmp_path) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "schedule snapshot ignored" in warnings[0].getMessage()
    assert not (tmp_path / SNAPSHOT_NAME).exists()


def test_remove_snapshot(tmp_path: Path) -> None:
    assert remove_snapshot(tmp_path) is False
    write_snapshot(tmp_path, [make_envelope()], 1)
    (tmp_path / TEMP_NAME).write_bytes(b"x")
    assert remove_snapshot(tmp_path) is True
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("names", "gone"),
    [
        ([], False),
        ([TEMP_NAME], True),
        ([SNAPSHOT_NAME], True),
        ([TEMP_NAME, SNAPSHOT_NAME], True),
    ],
    ids=["none", "temp", "snapshot", "both"],
)
def test_remove_snapshot_says_whether_either_file_was_there(
    tmp_path: Path, names: list[str], gone: bool
) -> None:
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert remove_snapshot(tmp_path) is gone
    assert os.listdir(tmp_path) == []


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each os.fsync synced: "file" or "dir"."""
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return synced


def test_writing_taking_and_removing_are_durable_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = _fsyncs(monkeypatch)
    write_snapshot(tmp_path, [make_envelope()], 1)
    assert synced == ["file", "dir"]  # the file, then its rename
    synced.clear()
    assert take_snapshot(tmp_path) is not None
    assert synced == ["dir"]  # the removal, before anything is read
    synced.clear()
    assert remove_snapshot(tmp_path) is False
    assert synced == []  # nothing removed, nothing to make durable
    (tmp_path / SNAPSHOT_NAME).write_bytes(b"x")
    assert remove_snapshot(tmp_path) is True
    assert synced == ["dir"]


def test_without_fsync_nothing_is_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = _fsyncs(monkeypatch)
    write_snapshot(tmp_path, [make_envelope()], 1, fsync=False)
    assert take_snapshot(tmp_path, fsync=False) is not None
    (tmp_path / SNAPSHOT_NAME).write_bytes(b"x")
    assert remove_snapshot(tmp_path, fsync=False) is True
    assert synced == []


# --- reconcile (pure) ----------------------------------------------------------------------


def _done(env: Envelope, notices: str = "") -> Envelope:
    for rcpt in env.recipients:
        rcpt.status = RcptStatus.DELIVERED
    env.notices = notices
    return env


def test_reconcile_keeps_the_present_and_drops_the_missing_in_order() -> None:
    plan = reconcile(["Qa", "Qgone", "Qb", "Qgone2"], {"Qgone", "Qgone2"})
    assert plan.present == ["Qa", "Qb"]
    assert plan.dropped == ["Qgone", "Qgone2"]


def test_reconcile_of_nothing() -> None:
    plan = reconcile([], set())
    assert (plan.present, plan.dropped) == ([], [])


# --- recovery with a snapshot --------------------------------------------------------------


async def _stored(spool: DiskSpool, count: int) -> list[Envelope]:
    envs = [make_envelope() for _ in range(count)]
    for env in envs:
        await spool.store(env, BODY)
    return envs


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names: list[str] = []
    original = DiskSpool._recover_file

    def spy(self: DiskSpool, path: str, name: str, started_ns: int | None = None) -> object:
        names.append(name)
        return original(self, path, name, started_ns)

    monkeypatch.setattr(DiskSpool, "_recover_file", spy)
    return names


async def test_snapshot_entries_are_restored_without_reading_their_files(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    envs = await _stored(spool, 5)
    for env in envs:  # memory ahead of what these test files hold: proves no file was read
        env.recipients[0].attempts = 7
    spool.write_snapshot(envs, len(envs))
    reads = _reads(monkeypatch)
    again = DiskSpool(spool.directory)
    taken = again.take_snapshot()
    assert taken is not None
    assert not (spool.directory / SNAPSHOT_NAME).exists()
    back = list(again.recover(snapshot=taken))
    assert back == envs
    assert [e.recipients[0].attempts for e in back] == [7] * 5
    assert reads == []
    stats = again.recovery
    assert (stats.snapshot, stats.from_snapshot, stats.files_read, stats.dropped) == (
        True,
        5,
        0,
        0,
    )


async def test_an_entry_whose_file_is_gone_is_dropped(
    spool: DiskSpool, caplog: pytest.LogCaptureFixture
) -> None:
    envs = await _stored(spool, 3)
    spool.write_snapshot(envs, len(envs))
    (spool.directory / envs[1].queue_id).unlink()
    again = DiskSpool(spool.directory)
    with caplog.at_level(logging.WARNING, logger="outrider.spool"):
        back = list(again.recover(snapshot=again.take_snapshot()))
    assert back == [envs[0], envs[2]]
    assert again.recovery.dropped == 1
    assert "no file any more" in caplog.text
    assert not (spool.directory / envs[1].queue_id).exists()


async def test_a_file_without_an_entry_is_read_as_usual(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    envs = await _stored(spool, 3)
    spool.write_snapshot(envs[:2], 2)
    reads = _reads(monkeypatch)
    again = DiskSpool(spool.directory)
    back = {e.queue_id: e for e in again.recover(snapshot=again.take_snapshot())}
    assert back == {e.queue_id: e for e in envs}
    assert reads == [envs[2].queue_id]
    assert (again.recovery.from_snapshot, again.recovery.files_read) == (2, 1)


async def test_a_finished_entry_has_its_file_removed(spool: DiskSpool) -> None:
    envs = await _stored(spool, 2)
    _done(envs[0])
    owing = _done(envs[1], notices="S")
    spool.write_snapshot(envs, len(envs))
    again = DiskSpool(spool.directory)
    back = list(again.recover(snapshot=again.take_snapshot()))
    assert back == [owing]  # still owes its notice: restored, file kept
    assert not (spool.directory / envs[0].queue_id).exists()
    assert (spool.directory / envs[1].queue_id).exists()


async def test_an_entry_the_scheduler_knows_already_is_not_restored_twice(
    spool: DiskSpool,
) -> None:
    envs = await _stored(spool, 2)
    spool.write_snapshot(envs, len(envs))
    again = DiskSpool(spool.directory)
    back = list(
        again.recover(known=lambda name: name == envs[0].queue_id, snapshot=again.take_snapshot())
    )
    assert back == [envs[1]]


async def test_the_other_guarantees_of_recovery_hold_with_a_snapshot(spool: DiskSpool) -> None:
    """Abandoned temps, unused reserved names and damaged files are dealt with as without
    a snapshot; files written since the start are left to their hand-off."""
    envs = await _stored(spool, 3)
    spool.write_snapshot(envs[:2], 2)
    directory = spool.directory
    damaged = directory / envs.pop().queue_id  # not in the snapshot: read, found cut short
    os.truncate(damaged, damaged.stat().st_size - 5)
    temp = directory / f"tmp.{os.getpid()}.{make_envelope().queue_id}"  # an earlier run's
    temp.write_bytes(b"half a message")
    reserved = directory / make_envelope().queue_id
    reserved.write_bytes(b"")
    old = time.time() - 60
    os.utime(reserved, (old, old))
    started_ns = time.time_ns()
    await asyncio.sleep(0.05)  # file times come from a coarser clock (a kernel tick)
    fresh_env = make_envelope()
    fresh = DiskSpool(directory)
    await fresh.store(fresh_env, BODY)
    await fresh.close()
    again = DiskSpool(directory)
    back = list(again.recover(snapshot=again.take_snapshot(), started_ns=started_ns))
    assert sorted(back, key=lambda e: e.queue_id) == sorted(envs, key=lambda e: e.queue_id)
    assert not temp.exists()
    assert not reserved.exists()
    assert (directory / QUARANTINE_DIR / damaged.name).exists()
    assert (directory / fresh_env.queue_id).exists()  # left to its hand-off
    assert again.unused_names_removed == 1


async def test_recovery_without_a_snapshot_reads_every_file(spool: DiskSpool) -> None:
    envs = await _stored(spool, 3)
    again = DiskSpool(spool.directory)
    assert again.take_snapshot() is None
    assert {e.queue_id for e in again.recover(snapshot=None)} == {e.queue_id for e in envs}
    stats = again.recovery
    assert (stats.snapshot, stats.from_snapshot, stats.files_read) == (False, 0, 3)


async def test_the_snapshot_is_not_taken_for_a_message(spool: DiskSpool) -> None:
    """Recovery without a snapshot (an older release's, or a start after a failed take)
    neither reads nor quarantines the snapshot files."""
    envs = await _stored(spool, 1)
    spool.write_snapshot(envs, len(envs))
    (spool.directory / TEMP_NAME).write_bytes(b"x")
    assert list(DiskSpool(spool.directory).recover()) == envs
    assert (spool.directory / SNAPSHOT_NAME).exists()
    assert not (spool.directory / QUARANTINE_DIR).exists()


async def test_write_failures_are_counted(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    (spool.directory / env.queue_id).unlink()
    (spool.directory / env.queue_id).mkdir()  # the append cannot open a directory for writing
    with pytest.raises(SpoolError):
        await spool.record(env, env.recipients)
    assert spool.write_failures == 1
    await spool.close()
    with pytest.raises(SpoolClosedError):
        await spool.record(env, env.recipients)
    assert spool.write_failures == 2


async def test_an_entry_that_cannot_be_built_is_read_from_its_file(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    envs = await _stored(spool, 2)
    out = io.BytesIO()
    out.write(snapshot._header(2))
    out.write(encode_entry(envs[0]))
    bad = marshal.dumps((envs[1].queue_id, "not", "an", "envelope"))  # checks out, builds not
    out.write(struct.pack("<II", len(bad), zlib.crc32(bad)) + bad)
    out.write(snapshot._TRAILER.pack(snapshot.END, 2))
    (spool.directory / SNAPSHOT_NAME).write_bytes(out.getvalue())
    reads = _reads(monkeypatch)
    again = DiskSpool(spool.directory)
    with caplog.at_level(logging.WARNING, logger="outrider.spool"):
        back = list(again.recover(snapshot=again.take_snapshot()))
    assert back == envs
    assert reads == [envs[1].queue_id]
    assert (again.recovery.from_snapshot, again.recovery.files_read) == (1, 1)
    assert "snapshot entry unusable" in caplog.text
