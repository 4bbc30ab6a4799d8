"""Recovery after crashes: temp files, torn records, damaged headers, kill -9."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import inspect
import io
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outrider.message.envelope import RcptStatus
from outrider.spool import disk, temps
from outrider.spool.codec import PREFIX_SIZE, encode_record
from outrider.spool.disk import (
    QUARANTINE_DIR,
    RECOVERY_AHEAD_PER_READER,
    STALE_TEMP_AGE,
    DiskSpool,
)
from tests.unit.spool.conftest import make_envelope

BODY = b"Subject: recovery\r\n\r\nhello\r\n"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_leftover_temp_files_are_cleaned(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    directory = spool.directory
    ours = directory / f"tmp.{os.getpid()}.{make_envelope().queue_id}"  # earlier incarnation
    dead = directory / f"tmp.{_dead_pid()}.{make_envelope().queue_id}"
    malformed = directory / "tmp.garbage"
    live_fresh = directory / f"tmp.{os.getppid()}.{make_envelope().queue_id}"
    live_stale = directory / f"tmp.{os.getppid()}.{make_envelope().queue_id}"
    for path in (ours, dead, malformed, live_fresh, live_stale):
        path.write_bytes(b"half a message")
    old = time.time() - STALE_TEMP_AGE - 60
    os.utime(live_stale, (old, old))

    assert [e.queue_id for e in spool.recover()] == [env.queue_id]
    left = sorted(p.name for p in directory.iterdir())
    # another live process may be mid-store: its fresh temp file is not ours to delete
    assert left == sorted([env.queue_id, live_fresh.name])


async def test_torn_final_status_record_is_ignored_and_cut(spool: DiskSpool) -> None:
    env = make_envelope(2)
    await spool.store(env, BODY)
    env.recipients[0].attempts = 1
    env.recipients[0].last_reply = "451 4.3.0 later"
    await spool.record(env, env.recipients[:1])
    path = spool.directory / env.queue_id
    good_size = path.stat().st_size

    env.recipients[0].status = RcptStatus.DELIVERED
    torn = encode_record([(0, env.recipients[0])])
    with path.open("ab") as f:
        f.write(torn[: len(torn) // 2])  # the crash hit mid-append

    (back,) = list(spool.recover())
    assert back.recipients[0].status is RcptStatus.PENDING
    assert back.recipients[0].attempts == 1
    assert back.recipients[0].last_reply == "451 4.3.0 later"
    assert path.stat().st_size == good_size  # cut, so the next append is readable

    back.recipients[1].status = RcptStatus.DELIVERED
    await spool.record(back, back.recipients[1:])
    (again,) = list(spool.recover())
    assert again.recipients[1].status is RcptStatus.DELIVERED


@pytest.mark.parametrize("keep", [1, 8, 20])
async def test_torn_first_status_record_is_cut_to_the_body_end(spool: DiskSpool, keep: int) -> None:
    env = make_envelope(2)
    await spool.store(env, BODY)
    path = spool.directory / env.queue_id
    stored_size = path.stat().st_size
    env.recipients[0].status = RcptStatus.DELIVERED
    with path.open("ab") as f:
        f.write(encode_record([(0, env.recipients[0])])[:keep])

    (back,) = list(spool.recover())
    assert back.recipients[0].status is RcptStatus.PENDING
    assert path.stat().st_size == stored_size  # no garbage octet left before the next append

    back.recipients[1].status = RcptStatus.BOUNCED
    await spool.record(back, back.recipients[1:])
    (again,) = list(spool.recover())
    assert again.recipients[1].status is RcptStatus.BOUNCED


@pytest.mark.parametrize("keep", [1, 10, PREFIX_SIZE, PREFIX_SIZE + 7])
async def test_file_truncated_in_its_header_is_quarantined(
    spool: DiskSpool, caplog: pytest.LogCaptureFixture, keep: int
) -> None:
    good, bad = make_envelope(), make_envelope()
    await spool.store(good, BODY)
    await spool.store(bad, BODY)
    path = spool.directory / bad.queue_id
    path.write_bytes(path.read_bytes()[:keep])

    with caplog.at_level(logging.ERROR, logger="outrider.spool.disk"):
        assert [e.queue_id for e in spool.recover()] == [good.queue_id]
    assert not path.exists()
    assert (spool.directory / QUARANTINE_DIR / bad.queue_id).exists()
    assert any(bad.queue_id in r.getMessage() for r in caplog.records)
    assert [e.queue_id for e in spool.recover()] == [good.queue_id]  # quarantine is skipped


async def test_file_truncated_in_its_body_is_quarantined(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    path = spool.directory / env.queue_id
    path.write_bytes(path.read_bytes()[:-3])
    assert list(spool.recover()) == []
    assert (spool.directory / QUARANTINE_DIR / env.queue_id).exists()


async def test_newer_format_is_left_alone(spool: DiskSpool) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    path = spool.directory / env.queue_id
    data = bytearray(path.read_bytes())
    data[4] = 2  # format version written by a newer release
    path.write_bytes(bytes(data))
    assert list(spool.recover()) == []
    assert path.exists()


async def test_recover_streams_without_reading_bodies(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = b"x" * (4 * 1024 * 1024)
    envs = [make_envelope() for _ in range(12)]
    for i, env in enumerate(envs):
        await spool.store(env, big if i < 3 else b"Subject: small\r\n\r\nbody\r\n")

    opened: list[str] = []
    reads: list[int] = []
    real_open, real_pread = os.open, os.pread

    def tracking_open(path: str, flags: int, *args: int) -> int:
        opened.append(os.path.basename(path))
        return real_open(path, flags, *args)

    def tracking_pread(fd: int, size: int, offset: int) -> bytes:
        reads.append(size)
        return real_pread(fd, size, offset)

    monkeypatch.setattr(os, "open", tracking_open)
    monkeypatch.setattr(os, "pread", tracking_pread)

    assert inspect.isgenerator(spool.recover())
    gen = spool.recover(readers=1)
    assert opened == []  # nothing happens until the first envelope is asked for
    first = next(gen)
    # It reads ahead of the caller, a bounded window (one reader: RECOVERY_AHEAD_PER_READER).
    assert first.queue_id in opened and len(set(opened)) <= RECOVERY_AHEAD_PER_READER < 12
    rest = list(gen)
    assert {e.queue_id for e in [first, *rest]} == {e.queue_id for e in envs}
    assert max(reads) < 128 * 1024  # header and tail only, never the 4 MiB bodies
    assert not hasattr(first, "body")


_CRASH_CHILD = textwrap.dedent(
    """
    import asyncio, hashlib, sys
    from pathlib import Path
    from tests.unit.spool.conftest import make_envelope
    from outrider.spool.disk import DiskSpool

    def body_for(qid):
        seed = hashlib.sha256(qid.encode()).digest()
        return seed * (64 + seed[0])

    async def worker(spool):
        while True:
            env = make_envelope(2)
            await spool.store(env, body_for(env.queue_id))
            sys.stdout.write(env.queue_id + "\\n")
            sys.stdout.flush()

    async def main():
        spool = DiskSpool(Path(sys.argv[1]))
        await asyncio.gather(*(worker(spool) for _ in range(16)))

    asyncio.run(main())
    """
)


def _body_for(qid: str) -> bytes:
    seed = hashlib.sha256(qid.encode()).digest()
    return seed * (64 + seed[0])


def test_kill_9_loses_no_acknowledged_message(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    root = Path(__file__).resolve().parents[3]
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASH_CHILD, str(directory)],
        stdout=subprocess.PIPE,
        cwd=root,
    )
    assert child.stdout is not None
    try:
        deadline = time.monotonic() + 30
        lines: list[bytes] = []
        while len(lines) < 300 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line)
        time.sleep(0.05)  # let it get well into the next batches
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(lines) == 300, "the child did not store messages"
    text = b"".join(lines).decode() + rest.decode()
    acknowledged = set(text.split("\n")[:-1])  # the last piece may be partial
    assert len(acknowledged) > 300
    asyncio.run(_verify_after_crash(directory, acknowledged))


async def _verify_after_crash(directory: Path, acknowledged: set[str]) -> None:
    spool = DiskSpool(directory)
    recovered = {env.queue_id: env for env in spool.recover()}
    assert acknowledged <= set(recovered)
    for qid in recovered:  # nothing half-written, acknowledged or not
        assert await spool.load_body(qid) == _body_for(qid)
    assert not [name for name in os.listdir(directory) if name.startswith("tmp.")]
    await spool.close()


async def test_recover_spares_a_store_in_progress(spool: DiskSpool) -> None:
    name = f"tmp.{os.getpid()}.{make_envelope().queue_id}"
    path = spool.directory / name
    path.write_bytes(b"being written")
    temps.add(str(path))
    try:
        assert list(spool.recover()) == []
        assert path.exists()
    finally:
        temps.discard(str(path))
    assert list(spool.recover()) == []
    assert not path.exists()


async def test_quarantine_logs_the_file_the_reason_and_where_it_went(
    spool: DiskSpool, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = make_envelope(), make_envelope()
    for env in (first, second):
        await spool.store(env, BODY)
        path = spool.directory / env.queue_id
        path.write_bytes(path.read_bytes()[:-3])  # body cut short

    with caplog.at_level(logging.ERROR, logger="outrider.spool.disk"):
        assert list(spool.recover()) == []

    quarantine = spool.directory / QUARANTINE_DIR
    assert sorted(os.listdir(quarantine)) == sorted([first.queue_id, second.queue_id])
    for env in (first, second):
        [message] = [r.getMessage() for r in caplog.records if env.queue_id in r.getMessage()]
        assert "body truncated" in message and str(quarantine) in message


async def test_a_damaged_file_that_cannot_be_quarantined_is_left_and_logged(
    spool: DiskSpool, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    path = spool.directory / env.queue_id
    path.write_bytes(path.read_bytes()[:-3])
    (spool.directory / QUARANTINE_DIR).symlink_to("nowhere")  # in the way of mkdir

    with caplog.at_level(logging.ERROR, logger="outrider.spool.disk"):
        assert list(spool.recover()) == []

    assert path.exists()
    [message] = [r.getMessage() for r in caplog.records]
    assert env.queue_id in message and "body truncated" in message
    assert "cannot be quarantined" in message


def _is_zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return fh.read().rsplit(b")", 1)[1].startswith(b" Z")


def test_temp_files_of_a_zombie_are_abandoned_and_of_a_live_process_kept(
    tmp_path: Path,
) -> None:
    """A killed receiver not yet reaped is a zombie: dead for recovery. A live one is
    only looked at, never signalled."""
    spool = DiskSpool(tmp_path / "spool")
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    live = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        # signals keep their default effect (not ignored as under nohup): one would end it
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )
    try:
        for _ in range(500):  # exited, not reaped
            if _is_zombie(zombie.pid):
                break
            time.sleep(0.01)
        dead_temp = spool.directory / f"tmp.{zombie.pid}.{make_envelope().queue_id}"
        live_temp = spool.directory / f"tmp.{live.pid}.{make_envelope().queue_id}"
        dead_temp.write_bytes(b"half")
        live_temp.write_bytes(b"half")

        assert list(spool.recover()) == []

        assert not dead_temp.exists()
        assert live_temp.exists()
        with pytest.raises(subprocess.TimeoutExpired):  # still running: not signalled
            live.wait(timeout=0.3)
    finally:
        live.kill()
        live.wait()
        zombie.wait()


def test_a_zombie_whose_name_holds_a_parenthesis_is_dead(tmp_path: Path) -> None:
    """The state follows the last ')' of /proc/<pid>/stat: a command name may hold one."""
    spool = DiskSpool(tmp_path / "spool")
    command = tmp_path / "x) S"
    command.symlink_to("/bin/true")
    zombie = subprocess.Popen([str(command)])
    try:
        for _ in range(500):  # exited, not reaped
            if _is_zombie(zombie.pid):
                break
            time.sleep(0.01)
        with open(f"/proc/{zombie.pid}/stat", "rb") as fh:
            assert b"(x) S)" in fh.read()
        temp = spool.directory / f"tmp.{zombie.pid}.{make_envelope().queue_id}"
        temp.write_bytes(b"half")
        assert list(spool.recover()) == []
        assert not temp.exists()
    finally:
        zombie.wait()


@pytest.fixture
def sleeper() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_cannot_be_signalled_is_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleeper: int
) -> None:
    """Another user's process (kill() says EPERM) still runs: its fresh temp is kept."""
    spool = DiskSpool(tmp_path / "spool")
    temp = spool.directory / f"tmp.{sleeper}.{make_envelope().queue_id}"
    temp.write_bytes(b"half")

    def not_permitted(pid: int, sig: int) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    with monkeypatch.context() as patch:
        patch.setattr(os, "kill", not_permitted)
        assert list(spool.recover()) == []
    assert temp.exists()


@pytest.mark.parametrize(
    ("stat", "kept"),
    [
        (None, True),  # no procfs: kill() said it runs
        (b"%d (sleep) S 1 2 3", True),
        (b"%d (sleep) X 1 2 3", False),  # dead, being reaped
        (b"%d (sleep) Z 1 2 3", False),
    ],
)
def test_the_state_of_a_process_is_read_from_procfs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sleeper: int,
    stat: bytes | None,
    kept: bool,
) -> None:
    spool = DiskSpool(tmp_path / "spool")
    temp = spool.directory / f"tmp.{sleeper}.{make_envelope().queue_id}"
    temp.write_bytes(b"half")
    real_open = open

    def fake_open(path: str, *args: Any, **kwargs: Any) -> Any:
        if path != f"/proc/{sleeper}/stat":
            return real_open(path, *args, **kwargs)
        if stat is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return io.BytesIO(stat % sleeper)

    monkeypatch.setattr(disk, "open", fake_open, raising=False)
    assert list(spool.recover()) == []
    assert temp.exists() is kept


def test_a_temp_file_is_judged_by_its_own_age_not_a_link_target(
    tmp_path: Path, sleeper: int
) -> None:
    spool = DiskSpool(tmp_path / "spool")
    old_target = tmp_path / "old"
    old_target.write_bytes(b"old")
    old = time.time() - STALE_TEMP_AGE - 60
    os.utime(old_target, (old, old))
    temp = spool.directory / f"tmp.{sleeper}.{make_envelope().queue_id}"
    temp.symlink_to(old_target)  # fresh itself
    assert list(spool.recover()) == []
    assert temp.is_symlink()


async def test_recovery_goes_past_known_and_finished_messages(spool: DiskSpool) -> None:
    """Whatever order the directory lists them in, a known id or a finished message
    (removed) never ends the scan."""
    unfinished, known, finished = [], set(), []
    for i in range(18):
        env = make_envelope()
        await spool.store(env, BODY)
        if i % 3 == 0:
            unfinished.append(env.queue_id)
        elif i % 3 == 1:
            known.add(env.queue_id)
        else:
            env.recipients[0].status = RcptStatus.DELIVERED
            await spool.record(env, env.recipients)
            finished.append(env.queue_id)
    found = {e.queue_id for e in spool.recover(known=known.__contains__)}
    assert found == set(unfinished)
    assert set(os.listdir(spool.directory)) == set(unfinished) | known


def _counting_dir_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    syncs: list[int] = []
    real = DiskSpool._sync_dir

    def counting(self: DiskSpool) -> None:
        syncs.append(1)
        real(self)

    monkeypatch.setattr(DiskSpool, "_sync_dir", counting)
    return syncs


async def test_recovery_syncs_the_directory_only_after_removing(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    syncs = _counting_dir_syncs(monkeypatch)
    assert [e.queue_id for e in spool.recover()] == [env.queue_id]
    assert syncs == []  # nothing removed: nothing to make durable
    (spool.directory / f"tmp.{_dead_pid()}.{make_envelope().queue_id}").write_bytes(b"half")
    assert [e.queue_id for e in spool.recover()] == [env.queue_id]
    assert syncs == [1]


@pytest.mark.parametrize("what", ["temps", "finished"])
async def test_recovery_syncs_after_removing_even_if_a_later_removal_found_nothing(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    """Two removals, the second of a file someone else removed first."""
    for _ in range(2):
        if what == "temps":
            name = f"tmp.{_dead_pid()}.{make_envelope().queue_id}"
            (spool.directory / name).write_bytes(b"half")
        else:
            env = make_envelope()
            await spool.store(env, BODY)
            env.recipients[0].status = RcptStatus.DELIVERED
            await spool.record(env, env.recipients)
    syncs = _counting_dir_syncs(monkeypatch)
    real = os.unlink
    calls = 0

    def second_already_gone(path: str) -> None:
        nonlocal calls
        calls += 1
        real(path)
        if calls > 1:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)

    monkeypatch.setattr(os, "unlink", second_already_gone)
    assert list(spool.recover()) == []
    monkeypatch.undo()
    assert os.listdir(spool.directory) == []
    assert syncs == [1]


async def test_unused_names_are_counted_only_when_removed(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gone, refused = make_envelope().queue_id, make_envelope().queue_id
    for name in (gone, refused):
        (spool.directory / name).touch()  # empty: reserved names of an earlier run
    real = os.unlink

    def unlink(path: str) -> None:
        if os.path.basename(path) == refused:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        real(path)
        if os.path.basename(path) == gone:  # as if another process removed it first
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)

    monkeypatch.setattr(os, "unlink", unlink)
    with caplog.at_level(logging.ERROR, logger="outrider.spool.disk"):
        assert list(spool.recover()) == []
    monkeypatch.undo()
    assert spool.unused_names_removed == 0
    assert os.listdir(spool.directory) == [refused]
    assert any(refused in r.getMessage() for r in caplog.records)


async def test_recovery_leaves_files_whose_names_are_not_queue_ids(spool: DiskSpool) -> None:
    (spool.directory / "notes.txt").write_bytes(b"not a message" * 20)
    (spool.directory / "empty.file").touch()
    assert list(spool.recover()) == []
    assert sorted(os.listdir(spool.directory)) == ["empty.file", "notes.txt"]


async def test_recovery_leaves_symlinks_alone(spool: DiskSpool, tmp_path: Path) -> None:
    empty, garbage = tmp_path / "empty", tmp_path / "garbage"
    empty.touch()
    garbage.write_bytes(b"not a message" * 20)
    first, second = make_envelope().queue_id, make_envelope().queue_id
    (spool.directory / first).symlink_to(empty)
    (spool.directory / second).symlink_to(garbage)
    assert list(spool.recover()) == []
    assert sorted(os.listdir(spool.directory)) == sorted([first, second])


async def test_an_empty_file_written_just_before_the_start_is_kept(spool: DiskSpool) -> None:
    """File times lag the clock by up to a tick: an empty file whose time is a little
    before the start may be a reservation made since (by a receiver)."""
    started_ns = time.time_ns()
    recent, old = make_envelope().queue_id, make_envelope().queue_id
    for name, age_ns in ((recent, 10_000_000), (old, 10**9)):
        path = spool.directory / name
        path.touch()
        os.utime(path, ns=(started_ns - age_ns, started_ns - age_ns))
    assert list(spool.recover(started_ns=started_ns)) == []
    assert os.listdir(spool.directory) == [recent]
    assert spool.unused_names_removed == 1


async def test_recovering_an_intact_message_leaves_its_file_untouched(
    spool: DiskSpool, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_envelope(2)
    await spool.store(env, BODY)
    env.recipients[0].attempts = 1
    await spool.record(env, env.recipients[:1])
    path = spool.directory / env.queue_id
    before = path.stat()
    await asyncio.sleep(0.02)
    with caplog.at_level(logging.WARNING, logger="outrider.spool.disk"):
        assert [e.queue_id for e in spool.recover()] == [env.queue_id]
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert caplog.records == []


def _tracking_reads(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], threading.Condition]:
    """Names of the threads that read a file at recovery, one per file read."""
    readers: list[str] = []
    cond = threading.Condition()
    real = DiskSpool._recover_file

    def tracking(self: DiskSpool, path: str, name: str, started_ns: int | None = None) -> Any:
        time.sleep(0.002)  # a slow disk: a reader that is busy makes the pool start another
        with cond:
            readers.append(threading.current_thread().name)
            cond.notify_all()
        return real(self, path, name, started_ns)

    monkeypatch.setattr(DiskSpool, "_recover_file", tracking)
    return readers, cond


@pytest.mark.parametrize("readers", [0, 1, 3])
async def test_recovery_reads_ahead_a_bounded_window_with_readers_threads(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch, readers: int
) -> None:
    envs = [make_envelope() for _ in range(3 * RECOVERY_AHEAD_PER_READER + 6)]
    for env in envs:
        await spool.store(env, BODY)
    reads, cond = _tracking_reads(monkeypatch)
    window = max(1, readers) * RECOVERY_AHEAD_PER_READER
    gen = spool.recover(readers=readers)
    first = next(gen)
    # The caller holds the first message: exactly the window is read, and no more.
    with cond:
        assert cond.wait_for(lambda: len(reads) >= window, timeout=5)
    await asyncio.sleep(0.05)
    assert len(reads) == window
    rest = list(gen)
    assert sorted(e.queue_id for e in [first, *rest]) == sorted(e.queue_id for e in envs)
    assert len(reads) == len(envs)
    # (never more threads than asked; more than one when asked, as each read is slow)
    assert len(set(reads)) <= max(1, readers) and (readers < 2 or len(set(reads)) > 1)
    assert all(name.startswith("spool-recover") for name in reads)


async def test_closing_recovery_early_stops_its_readers_and_keeps_the_rest_for_later(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    unfinished, finished = [], []
    for i in range(4 * RECOVERY_AHEAD_PER_READER):
        env = make_envelope()
        await spool.store(env, BODY)
        if i % 2:
            env.recipients[0].status = RcptStatus.DELIVERED
            await spool.record(env, env.recipients)
            finished.append(env.queue_id)
        else:
            unfinished.append(env.queue_id)
    reads, _ = _tracking_reads(monkeypatch)
    gen = spool.recover(readers=2)
    first = next(gen)
    gen.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("spool-recover")]
    # Nothing read after the close, nothing left half-read: every unfinished message is
    # still there, intact, and a finished one read ahead is at worst removed next time.
    settled = len(reads)
    await asyncio.sleep(0.02)
    assert len(reads) == settled < len(unfinished) + len(finished)
    again = {e.queue_id for e in spool.recover()}
    assert first.queue_id in again and again == set(unfinished)
    assert sorted(os.listdir(spool.directory)) == sorted(unfinished)


async def test_a_finished_message_owing_a_notice_is_recovered_not_removed(
    spool: DiskSpool,
) -> None:
    env = make_envelope()
    await spool.store(env, BODY)
    env.recipients[0].status = RcptStatus.DELIVERED
    env.notices = "S"
    await spool.record(env, env.recipients)
    found = list(spool.recover())
    assert [(e.queue_id, e.is_done, e.notices) for e in found] == [(env.queue_id, True, "S")]
    assert os.listdir(spool.directory) == [env.queue_id]


async def test_recovery_syncs_once_after_removing_a_temp_and_a_finished_message(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    (spool.directory / f"tmp.{_dead_pid()}.{make_envelope().queue_id}").write_bytes(b"half")
    env = make_envelope()
    await spool.store(env, BODY)
    env.recipients[0].status = RcptStatus.DELIVERED
    await spool.record(env, env.recipients)
    syncs = _counting_dir_syncs(monkeypatch)
    assert list(spool.recover()) == []
    assert os.listdir(spool.directory) == []
    assert syncs == [1]


async def test_recovery_goes_past_entries_that_are_not_messages(
    spool: DiskSpool, tmp_path: Path
) -> None:
    """Whatever order the directory lists them in, a stray file, a symlink or a
    directory among the messages never ends the scan."""
    envs = [make_envelope() for _ in range(8)]
    for env in envs:
        await spool.store(env, BODY)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"not a message")
    for i in range(4):
        (spool.directory / f"notes{i}.txt").write_bytes(b"not a message")
        (spool.directory / make_envelope().queue_id).symlink_to(target)
        (spool.directory / make_envelope().queue_id).mkdir()
    assert sorted(e.queue_id for e in spool.recover()) == sorted(e.queue_id for e in envs)
    assert len(os.listdir(spool.directory)) == len(envs) + 3 * 4  # strays all left alone


async def test_closing_recovery_early_still_syncs_the_removals_it_made(
    spool: DiskSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that stops early (a daemon shut down during recovery) leaves no removal
    that a power loss could undo without the directory having been synced. Directory
    order decides what is removed before the first message comes back; with sixteen
    finished messages and four dead temps among one unfinished message it almost always
    is something."""
    for _ in range(2 * RECOVERY_AHEAD_PER_READER):
        env = make_envelope()
        await spool.store(env, BODY)
        env.recipients[0].status = RcptStatus.DELIVERED
        await spool.record(env, env.recipients)
    await spool.store(make_envelope(), BODY)
    for _ in range(4):
        (spool.directory / f"tmp.{_dead_pid()}.{make_envelope().queue_id}").write_bytes(b"x")
    before = len(os.listdir(spool.directory))
    syncs = _counting_dir_syncs(monkeypatch)
    gen = spool.recover(readers=1)
    next(gen)
    gen.close()
    removed = before - len(os.listdir(spool.directory))
    assert syncs == ([1] if removed else [])
