"""The on-disk spool: one file per message, group-committed by a dedicated thread.

Durability protocol for ``store``: write prefix+envelope+body to ``tmp.<pid>.<id>``,
fdatasync it, hard-link it to ``<id>`` (``link`` refuses to replace, so an id collision can
never overwrite a stored message), unlink the temp name, then fsync the directory once for
the whole batch before any future in the batch completes. A crash leaves either no final
name or a complete, fsynced file under it.

A message whose queue id came from :meth:`DiskSpool.new_queue_id` usually has a reserved
name (:mod:`outrider.spool.names`): an empty file created and made durable earlier, while
the committer was idle. Its store writes into that file and fdatasyncs it: one flush
instead of two, which is what a client sending one message after another waits for. A
crash during that write can leave a file cut short under its final name; its client was
not told 250, and recovery quarantines it. Empty files found by recovery are unused
reservations and are removed.

``remove`` moves the file into the recycle bin (:mod:`outrider.spool.recycle`, whose
files the reserved names reuse: no inode to allocate or free per message), or unlinks it
when the bin is full, without syncing the directory either way: the removal becomes
durable with the next directory sync or journal commit (ext4 commits every few seconds).
A power loss before that brings back a message that was already delivered, which is then
delivered again; nothing is lost. Postfix makes the same trade.

A body spilled while it was received (:mod:`outrider.spool.spill`) is already in its temp
file, behind a reserved room: the store writes the prefix, the envelope (padded with JSON
whitespace to fill the room exactly) and the completed header section into that room,
then syncs and links the file as above. The body's CRC is combined from the head's and
the tail's, so the tail is never read back. An envelope too big for the room makes the
store copy the tail into a fresh temp file with ``copy_file_range`` (in the kernel).

Status changes are appended to the message file as small CRC-framed records (never
rewriting the body) and fdatasynced, batched the same way; records for one message in one
batch become a single write.

Group commit: callers enqueue jobs and await a future; the committer thread takes
everything queued, does the per-file writes and syncs in a small pool (concurrent fsyncs
share journal commits on ext4/xfs: measured 3-5x the rate of sequential fsyncs), then one
directory fsync, then completes the futures with one ``call_soon_threadsafe`` per event
loop. While a batch commits the next one accumulates, so batch size follows load without
any added delay.

The spool directory is flat. ext4 and xfs index directories with hashed B-trees, so
lookups stay cheap with millions of entries, and ``recover`` streams it with ``scandir``;
hashing into subdirectories would turn the one directory fsync per batch into one per
subdirectory touched, which is the dominant cost of a commit.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import queue
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from outrider.message.envelope import Envelope, Recipient
from outrider.spool import recycle, temps
from outrider.spool.base import (
    CorruptMessageError,
    DuplicateMessageError,
    SpoolClosedError,
    SpoolError,
    UnknownMessageError,
    error_from_os,
)
from outrider.spool.codec import (
    PREFIX_SIZE,
    CodecError,
    UnsupportedFormatError,
    apply_records,
    check_body,
    check_header,
    crc32_combine,
    decode_envelope,
    decode_prefix,
    encode_envelope,
    encode_prefix,
    encode_prefix_for,
    encode_record,
)
from outrider.spool.names import NamePool
from outrider.spool.reader import StoredBody
from outrider.spool.snapshot import (
    SnapshotError,
    decode_entry,
    reconcile,
    remove_snapshot,
    take_snapshot,
    write_snapshot,
)
from outrider.spool.spill import SpilledBody, SpillFile
from outrider.spool.temps import TMP_PREFIX

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
STALE_TEMP_AGE = 3600.0  # a temp file of a live process older than this is abandoned
DEFAULT_WORKERS = 8  # fsync pool size; measured: 8-16 saturate a virtio disk, 32 regresses
# Recovery reads this many files at once, up to RECOVERY_AHEAD_PER_READER each ahead of
# the caller. Measured (bench/README.md, recovery): 200,000 files with a cold page cache,
# one at a time (before) 62 s; one reader 41 s, eight 27 s, sixteen 21.5 s.
RECOVERY_READERS = 16
RECOVERY_AHEAD_PER_READER = 8
_HEAD_READ = 64 * 1024  # first read at recovery: prefix + envelope in one syscall usually

_NAME_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")
_O_CLOEXEC = temps.O_CLOEXEC
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
_COPY_CHUNK = 1024 * 1024  # copy_file_range request size
_MTIME_MARGIN_NS = 50_000_000  # file times lag time.time_ns() by up to a kernel tick

_STORE, _RECORD, _REMOVE, _STOP, _RESERVE = range(5)


@dataclass(slots=True)
class SpoolStats:
    """Counters for benchmarks and metrics (written by the committer thread only)."""

    stores: int = 0
    records: int = 0
    removes: int = 0
    batches: int = 0
    fsyncs: int = 0  # file fsync/fdatasync calls
    dir_fsyncs: int = 0
    in_place: int = 0  # stores into a reserved name (no directory fsync needed)
    reserved: int = 0  # names reserved
    recycled: int = 0  # of those, made from finished messages' files (spool.recycle)
    binned: int = 0  # removals that moved the file into the recycle bin


@dataclass(slots=True)
class RecoveryStats:
    """What the last :meth:`DiskSpool.recover` did (for its log line and the bench)."""

    snapshot: bool = False  # a schedule snapshot was used
    from_snapshot: int = 0  # entries used as they were, their files not read
    files_read: int = 0  # message files opened and read
    dropped: int = 0  # snapshot entries whose file was gone


@dataclass(slots=True, eq=False)
class _Job:
    kind: int
    queue_id: str
    data: bytes  # envelope JSON (store) or encoded record (record)
    body: bytes | SpilledBody
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[None] | None
    error: SpoolError | None = None
    temp: str = ""  # store: the temp file to link under the queue id
    # store: the queue id is a reserved name (spool.names); written in place if it holds
    # the body, else the temp file is renamed over it
    reserved: bool = False


def _write_all(fd: int, parts: Sequence[bytes]) -> None:
    views = [memoryview(p) for p in parts if p]
    while views:
        n = os.writev(fd, views)
        while n:
            first = len(views[0])
            if n >= first:
                n -= first
                views.pop(0)
            else:
                views[0] = views[0][n:]
                n = 0


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) == size or not data:
        return data
    chunks = [data]
    got = len(data)
    while got < size:
        chunk = os.pread(fd, size - got, offset + got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _call(task: Callable[[], None]) -> None:
    task()


def _copy_range(src: int, src_offset: int, dst: int, dst_offset: int, size: int) -> None:
    """Copy ``size`` octets between files in the kernel (``copy_file_range``), or through
    a bounded buffer where the file system cannot."""
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(
                src, dst, min(_COPY_CHUNK, size - done), src_offset + done, dst_offset + done
            )
            if n == 0:
                raise OSError(errno.EIO, "spill file shorter than its tail")
            done += n
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while done < size:
        data = _pread_all(src, min(_COPY_CHUNK, size - done), src_offset + done)
        if not data:
            raise OSError(errno.EIO, "spill file shorter than its tail")
        temps.pwrite_all(dst, data, dst_offset + done)
        done += len(data)


def _pid_alive(pid: int) -> bool:
    """Whether a process still runs; a zombie (killed, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True  # no procfs: trust kill()
    # The state field follows the parenthesised command name, which may contain spaces.
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def _complete(items: list[tuple[asyncio.Future[None], SpoolError | None]]) -> None:
    for future, error in items:
        if future.done():  # the caller was cancelled; the commit happened regardless
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class DiskSpool:
    """A durable spool in one directory; safe for concurrent ``store`` from many processes."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = True,
        workers: int = DEFAULT_WORKERS,
        reuse_files: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stats = SpoolStats()
        self._fsync = fsync
        self._workers = max(1, workers)
        self._dir = str(self.directory)
        self._pid = os.getpid()
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._taker = recycle.Taker(self._dir) if reuse_files else None
        self._names = NamePool(self._dir, o_cloexec=_O_CLOEXEC, taker=self._taker)
        # Finished messages' files go to the recycle bin, for reserved names to reuse.
        self._bin = recycle.Bin(self._dir) if reuse_files else None
        self._reserve_asked = False
        self.unused_names_removed = 0  # by recover(): empty files (spool.names)
        self._count_lock = threading.Lock()
        self.recovery = RecoveryStats()
        # Writes that failed (or were refused once closed) in this process's life: one is
        # enough to keep a stop from writing a schedule snapshot (memory may be ahead).
        self.write_failures = 0

    def new_queue_id(self) -> str:
        """A queue id for a message about to be stored here: a reserved name when one is
        ready (its store then needs one flush, not two), else a fresh id."""
        queue_id = self._names.take()
        if self._names.wanted and not self._reserve_asked and not self._closed:
            self._reserve_asked = True
            self._ensure_thread()
            self._queue.put(_Job(_RESERVE, "", b"", b"", None, None))
        return queue_id

    def release_queue_id(self, queue_id: str) -> None:
        """``queue_id`` from :meth:`new_queue_id` will not be stored (the message was
        refused): its reserved name serves the next message."""
        self._names.give_back(queue_id)

    # --- public API -----------------------------------------------------------------------

    async def store(self, envelope: Envelope, body: bytes | SpilledBody) -> None:
        """Durable on return. A spilled body's file is the spool's from the call on:
        linked under the queue id, or removed when the store fails."""
        try:
            self._check_id(envelope.queue_id)
            json = encode_envelope(envelope)
        except BaseException:
            if isinstance(body, SpilledBody):
                body.discard()
            raise
        reserved = self._names.claim(envelope.queue_id)
        await self._submit(_STORE, envelope.queue_id, json, body, reserved=reserved)

    def spill(self, head_len: int) -> SpillFile:
        return SpillFile(self._dir, head_len)

    async def load_body(self, queue_id: str) -> bytes:
        self._check_id(queue_id)
        if self._closed:
            raise SpoolClosedError("spool is closed")
        return await asyncio.to_thread(self._read_body, queue_id)

    async def open_body(self, queue_id: str) -> StoredBody:
        """Where the body lies in its file (prefix and envelope checked), to read it in
        chunks; the body's own CRC is checked as it is read."""
        self._check_id(queue_id)
        if self._closed:
            raise SpoolClosedError("spool is closed")
        return await asyncio.to_thread(self._locate_body, queue_id)

    async def record(self, envelope: Envelope, recipients: Sequence[Recipient]) -> None:
        """Append the state of ``recipients``, which must be the very objects in
        ``envelope.recipients`` (matched by identity, so repeated addresses are fine)."""
        self._check_id(envelope.queue_id)
        index = {id(r): i for i, r in enumerate(envelope.recipients)}
        pairs = []
        for rcpt in recipients:
            i = index.get(id(rcpt))
            if i is None:
                raise ValueError(f"{rcpt.address!r} is not a recipient of {envelope.queue_id}")
            pairs.append((i, rcpt))
        await self._submit(_RECORD, envelope.queue_id, encode_record(pairs, envelope))

    async def remove(self, queue_id: str) -> None:
        self._check_id(queue_id)
        await self._submit(_REMOVE, queue_id)

    def take_snapshot(self) -> dict[str, bytes] | None:
        """The schedule snapshot left by a clean stop (:mod:`outrider.spool.snapshot`),
        removed durably before it is read; None if there is none or it is invalid.
        Blocking: run it in a thread."""
        return take_snapshot(self._dir, fsync=self._fsync)

    def write_snapshot(self, envelopes: Iterable[Envelope], count: int) -> int:
        """Write the schedule snapshot of ``count`` envelopes (only at a clean stop: see
        ``Daemon``); its size."""
        return write_snapshot(self._dir, envelopes, count, fsync=self._fsync)

    def remove_snapshot(self) -> bool:
        """Remove a schedule snapshot (an unclean stop, an offline change of the spool)."""
        return remove_snapshot(self._dir, fsync=self._fsync)

    def recover(
        self,
        *,
        known: Callable[[str], bool] | None = None,
        started_ns: int | None = None,
        readers: int = RECOVERY_READERS,
        snapshot: dict[str, bytes] | None = None,
    ) -> Iterator[Envelope]:
        """Stream unfinished messages (and finished ones still owing a notice); removes
        abandoned temps, finished messages and empty files (unused reserved names),
        truncates torn status records and quarantines files with a damaged header.

        Order is directory order, from one process only. It repairs the tails that later
        appends extend, so it reads no file the scheduler already has (``known``: fresh
        mail taken while recovery runs, whose records may be being appended) and none
        written since ``started_ns`` (``time.time_ns()`` before the listeners opened: fresh
        mail whose hand-off is on its way; one whose hand-off is lost is adopted later).

        ``readers`` threads read files ahead of the caller: once the page cache has let
        go of a big spool, recovery waits on one random read after another, and a disk
        answers several at once far sooner (docs/scale.md, "Restart with a big spool").

        ``snapshot`` (from :meth:`take_snapshot`): the queued envelopes as a clean stop
        left them. Their files are only listed, never opened: the scan notes which are
        there, reads the rest the usual way (files an operator copied in), and at the end
        yields the entries whose file is there, removes the files of finished ones and
        drops the entries whose file is gone (deleted while the daemon was stopped).
        """
        removed = 0
        stats = self.recovery = RecoveryStats(snapshot=snapshot is not None)
        if recycle.clean(self._dir, _pid_alive):
            log.info("spool: removed recycle claims a crash left")
        missing: set[str] = set(snapshot) if snapshot is not None else set()
        ahead: deque[tuple[str, Future[Envelope | None]]] = deque()
        window = max(1, readers) * RECOVERY_AHEAD_PER_READER

        def take() -> Envelope | None:
            """The oldest read ahead; a finished message's file is removed instead."""
            nonlocal removed
            path, read = ahead.popleft()
            envelope = read.result()
            if envelope is not None and envelope.is_done and not envelope.notices:
                removed += self._unlink_quietly(path)
                return None
            return envelope

        pool = ThreadPoolExecutor(max(1, readers), thread_name_prefix="spool-recover")
        try:
            with os.scandir(self._dir) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(TMP_PREFIX):
                        if self._is_abandoned_temp(entry):
                            removed += self._unlink_quietly(entry.path)
                        continue
                    if not _NAME_RE.fullmatch(name) or not entry.is_file(follow_symlinks=False):
                        continue
                    if name in missing:  # in the snapshot: listed, not read
                        missing.discard(name)
                        continue
                    if known is not None and known(name):
                        continue
                    read = pool.submit(self._recover_file, entry.path, name, started_ns)
                    stats.files_read += 1
                    ahead.append((entry.path, read))
                    while len(ahead) >= window:
                        if (envelope := take()) is not None:
                            yield envelope
            while ahead:
                if (envelope := take()) is not None:
                    yield envelope
            if snapshot is not None:
                plan = reconcile(snapshot, missing)
                stats.dropped = len(plan.dropped)
                if plan.dropped:
                    log.warning(
                        "spool: %d message(s) of the schedule snapshot have no file any "
                        "more (removed while stopped); dropped",
                        len(plan.dropped),
                    )
                for queue_id in plan.present:
                    # One envelope built at a time (and its entry let go): the scheduler
                    # packs each waiting message as it comes (docs/scale.md).
                    payload = snapshot.pop(queue_id)
                    if known is not None and known(queue_id):
                        continue
                    path = os.path.join(self._dir, queue_id)
                    try:
                        envelope = decode_entry(payload)
                        stats.from_snapshot += 1
                    except SnapshotError as exc:
                        log.warning(
                            "spool: %s: snapshot entry unusable (%s); file read", queue_id, exc
                        )
                        stats.files_read += 1
                        from_file = self._recover_file(path, queue_id, started_ns)
                        if from_file is None:
                            continue
                        envelope = from_file
                    if envelope.is_done and not envelope.notices:
                        removed += self._unlink_quietly(path)
                        continue
                    yield envelope
        finally:
            # Closed early, reads not started are dropped; the removals made so far are
            # made durable all the same.
            pool.shutdown(cancel_futures=True)
            if self.unused_names_removed:
                log.info("spool: removed %d unused reserved names", self.unused_names_removed)
            if removed and self._fsync:
                self._sync_dir()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._start_lock:
            thread = self._thread
        if thread is not None:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            self._queue.put(_Job(_STOP, "", b"", b"", loop, done))
            await done
            thread.join()

    # --- submission -----------------------------------------------------------------------

    @staticmethod
    def _check_id(queue_id: str) -> None:
        if not _NAME_RE.fullmatch(queue_id):
            raise ValueError(f"queue id is not filename-safe: {queue_id!r}")

    async def _submit(
        self,
        kind: int,
        queue_id: str,
        data: bytes = b"",
        body: bytes | SpilledBody = b"",
        *,
        reserved: bool = False,
    ) -> None:
        if self._closed:
            if isinstance(body, SpilledBody):
                body.discard()
            with self._count_lock:
                self.write_failures += 1
            raise SpoolClosedError("spool is closed")
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Job(kind, queue_id, data, body, loop, future, reserved=reserved))
        await future

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name=f"spool-committer:{self._dir}", daemon=True
                )
                thread.start()
                self._thread = thread

    # --- committer thread -----------------------------------------------------------------

    def _run(self) -> None:
        pool = (
            ThreadPoolExecutor(self._workers, thread_name_prefix="spool-sync")
            if self._workers > 1 and self._fsync
            else None
        )
        try:
            stopping: list[_Job] = []
            reserve = False
            while not stopping:
                batch = [self._queue.get()]
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                jobs = [job for job in batch if job.kind not in (_STOP, _RESERVE)]
                stopping = [job for job in batch if job.kind == _STOP]
                reserve = reserve or len(jobs) + len(stopping) < len(batch)
                if jobs:
                    try:
                        self._commit(jobs, pool)
                    except BaseException as exc:  # never strand a caller's future
                        log.exception("spool commit failed")
                        for job in jobs:
                            job.error = job.error or SpoolError(f"spool commit failed: {exc!r}")
                    failed = sum(1 for job in jobs if job.error is not None)
                    if failed:
                        with self._count_lock:
                            self.write_failures += failed
                    self._deliver(jobs)
                # Reserving names is idle work: it waits while stores are queued.
                if reserve and not stopping and self._queue.empty():
                    reserve = not self._reserve()
        finally:
            if pool is not None:
                pool.shutdown()
            self._names.discard_all()
        self._deliver(stopping)

    def _reserve(self) -> bool:
        """Create reserved names until the pool is full or work arrives, then make them
        durable; whether the pool is full (or cannot be filled: a full disk)."""
        made = self._names.create(self._names.missing(), lambda: not self._queue.empty())
        if made and self._fsync:
            try:
                self._sync_dir()
                self.stats.dir_fsyncs += 1
            except OSError:
                log.exception("spool: cannot sync the directory of new reserved names")
                for queue_id in made:
                    self._unlink_quietly(os.path.join(self._dir, queue_id))
                made = []
        self._names.add(made)
        self.stats.reserved += len(made)
        self.stats.recycled = self._names.recycled
        full = not made or self._names.missing() == 0
        if full:
            self._names.wanted = False
            self._reserve_asked = False
        return full

    def _commit(self, jobs: list[_Job], pool: ThreadPoolExecutor | None) -> None:
        stats = self.stats
        stats.batches += 1
        stores = [job for job in jobs if job.kind == _STORE]
        removes = [job for job in jobs if job.kind == _REMOVE]
        records: dict[str, list[_Job]] = {}
        for job in jobs:
            if job.kind == _RECORD:
                records.setdefault(job.queue_id, []).append(job)

        # Phase 1: file contents, written and synced in parallel.
        tasks: list[Callable[[], None]] = [
            partial(self._write_temp if isinstance(job.body, bytes) else self._write_spilled, job)
            for job in stores
        ]
        tasks += [partial(self._append, group) for group in records.values()]
        if pool is not None and len(tasks) > 1:
            for _ in pool.map(_call, tasks):
                pass
        else:
            for task in tasks:
                task()
        if self._fsync:
            stats.fsyncs += len(tasks)
        stats.records += sum(len(group) for group in records.values())

        # Phase 2: names. Only the committer touches names, so no two renames race.
        stored = [job for job in stores if job.error is None and self._publish(job)]
        linked = [job for job in stored if job.temp]  # in place: the name was durable
        unlinked = [job for job in removes if self._unlink(job)]
        stats.in_place += len(stored) - len(linked)

        # Phase 3: one directory fsync makes every new name in the batch durable (and the
        # batch's removals with it; removals alone are not worth a flush: see the module
        # docstring).
        if linked and self._fsync:
            try:
                self._sync_dir()
                stats.dir_fsyncs += 1
            except OSError as exc:
                error = error_from_os("directory sync", exc)
                for job in linked:
                    job.error = error
                    self._unlink_quietly(os.path.join(self._dir, job.queue_id))
                for job in unlinked:
                    job.error = error
                if linked:
                    # The client is told 4xx: the withdrawn names must not come back after
                    # a crash as messages nobody acknowledged (and it would resend).
                    try:
                        self._sync_dir()
                        stats.dir_fsyncs += 1
                    except OSError:
                        log.exception("cannot sync the spool directory after withdrawing")
                return
        stats.stores += len(stored)
        stats.removes += len(unlinked)

    def _sync_dir(self) -> None:
        # Opened per batch rather than held, so a spool used only for recover() owns no fd.
        fd = os.open(self._dir, os.O_RDONLY | _O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _temp_name(self, queue_id: str) -> str:
        return f"{TMP_PREFIX}{self._pid}.{queue_id}"

    def _write_temp(self, job: _Job) -> None:
        body = job.body
        assert isinstance(body, bytes)
        if job.reserved and self._write_in_place(job, body):
            return
        prefix = encode_prefix(job.data, body)
        claimed = self._taker.claim(job.queue_id) if self._taker is not None else None
        if claimed is not None:  # a finished message's file, emptied (spool.recycle)
            path, fd = claimed
        else:
            path = os.path.join(self._dir, self._temp_name(job.queue_id))
        job.temp = path
        try:
            if claimed is None:
                temps.add(path)  # a temp of this process: recovery leaves it alone
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o600)
            try:
                _write_all(fd, (prefix, body))
                if self._fsync:
                    _datasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            job.error = error_from_os("store", exc)
            self._drop_temp(path)

    def _write_in_place(self, job: _Job, body: bytes) -> bool:
        """Write into the job's reserved (empty, durable) file; False if it is gone or
        not empty (then the caller stores under a temp name and links as usual)."""
        path = os.path.join(self._dir, job.queue_id)
        try:
            fd = os.open(path, os.O_WRONLY | _O_CLOEXEC)
        except OSError:
            job.reserved = False
            return False
        try:
            if os.fstat(fd).st_size:
                job.reserved = False  # never write over content, whatever it is
                return False
            _write_all(fd, (encode_prefix(job.data, body), body))
            if self._fsync:
                _datasync(fd)
        except OSError as exc:
            job.error = error_from_os("store", exc)
            self._unlink_quietly(path)  # not acknowledged: the client will retry
        finally:
            os.close(fd)
        return True

    def _write_spilled(self, job: _Job) -> None:
        """Complete a spilled body's file in place (or, for an envelope too big for its
        room, in a copy); see the module docstring."""
        body = job.body
        assert isinstance(body, SpilledBody)
        tail = body.tail
        try:
            fd = tail.detach()
        except SpoolError as exc:
            job.error = exc
            return
        except OSError as exc:
            job.error = error_from_os("store", exc)
            return
        job.temp = tail.path
        try:
            head = body.head
            crc = crc32_combine(zlib.crc32(head), tail.crc, tail.size)
            room = tail.reserve - PREFIX_SIZE - len(head)
            if len(job.data) <= room:
                envelope_json = job.data + b" " * (room - len(job.data))
                prefix = encode_prefix_for(envelope_json, len(head) + tail.size, crc)
                temps.pwrite_all(fd, prefix + head, 0)
                if self._fsync:
                    _datasync(fd)
            else:
                prefix = encode_prefix_for(job.data, len(head) + tail.size, crc)
                job.temp = self._copy_spilled(job.queue_id, prefix + head, fd, tail)
                self._drop_temp(tail.path)
        except OSError as exc:  # a failed copy removed its own file (_copy_spilled)
            job.error = error_from_os("store", exc)
            self._drop_temp(tail.path)
        finally:
            os.close(fd)

    def _copy_spilled(self, queue_id: str, header: bytes, src: int, tail: SpillFile) -> str:
        """A new temp file: ``header``, then the tail copied from ``src``; synced."""
        path = os.path.join(self._dir, self._temp_name(queue_id))
        temps.add(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o600)
            try:
                _write_all(fd, (header,))
                _copy_range(src, tail.reserve, fd, len(header), tail.size)
                if self._fsync:
                    _datasync(fd)
            finally:
                os.close(fd)
        except OSError:
            self._drop_temp(path)
            raise
        return path

    def _publish(self, job: _Job) -> bool:
        temp = job.temp
        if not temp:
            return True  # written in place under its reserved name
        try:
            if job.reserved:  # the reserved empty file: replace it
                os.rename(temp, os.path.join(self._dir, job.queue_id))
                temps.discard(temp)
                return True
            os.link(temp, os.path.join(self._dir, job.queue_id))
        except FileExistsError:
            job.error = DuplicateMessageError(f"queue id {job.queue_id} already in the spool")
            self._drop_temp(temp)
            return False
        except OSError as exc:
            job.error = error_from_os("store", exc)
            self._drop_temp(temp)
            return False
        self._drop_temp(temp)
        return True

    def _drop_temp(self, path: str) -> None:
        if path:
            self._unlink_quietly(path)
            temps.discard(path)

    def _append(self, group: list[_Job]) -> None:
        path = os.path.join(self._dir, group[0].queue_id)
        data = b"".join(job.data for job in group)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | _O_CLOEXEC)
        except OSError as exc:
            error = error_from_os("record", exc)
            for job in group:
                job.error = error
            return
        try:
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, (data,))
                if self._fsync:
                    _datasync(fd)
            except OSError as exc:
                error = error_from_os("record", exc)
                for job in group:
                    job.error = error
                # A partial record left in place would hide every later append from
                # recovery, so cut the file back to its last good length.
                try:
                    os.ftruncate(fd, size)
                    if self._fsync:
                        _datasync(fd)
                except OSError:
                    log.exception("cannot roll back status record of %s", group[0].queue_id)
        finally:
            os.close(fd)

    def _unlink(self, job: _Job) -> bool:
        path = os.path.join(self._dir, job.queue_id)
        if self._bin is not None and self._bin.put(path, job.queue_id):
            self.stats.binned += 1
            return True
        try:
            os.unlink(path)
        except FileNotFoundError:
            return True  # already gone: removal is idempotent
        except OSError as exc:
            job.error = error_from_os("remove", exc)
            return False
        return True

    def _deliver(self, jobs: list[_Job]) -> None:
        by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], SpoolError | None]]
        ]
        by_loop = {}
        for job in jobs:
            if job.loop is not None and job.future is not None:
                by_loop.setdefault(job.loop, []).append((job.future, job.error))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_complete, items)
            except RuntimeError:  # the loop was closed while its caller waited
                log.warning("spool: event loop closed before %d commits completed", len(items))

    # --- reading --------------------------------------------------------------------------

    def _open_for_reading(self, queue_id: str) -> int:
        """A message file's descriptor, or the spool error its absence or failure means."""
        try:
            return os.open(os.path.join(self._dir, queue_id), os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError as exc:
            raise UnknownMessageError(f"no message {queue_id} in the spool") from exc
        except OSError as exc:
            raise error_from_os("read", exc) from exc

    def _read_body(self, queue_id: str) -> bytes:
        fd = self._open_for_reading(queue_id)
        try:
            prefix = decode_prefix(_pread_all(fd, PREFIX_SIZE, 0))
            body = _pread_all(fd, prefix.body_len, prefix.body_offset)
            check_body(body, prefix)
        except CodecError as exc:
            raise CorruptMessageError(f"spool file {queue_id} is damaged: {exc}") from exc
        except OSError as exc:
            raise error_from_os("read", exc) from exc
        finally:
            os.close(fd)
        return body

    def _locate_body(self, queue_id: str) -> StoredBody:
        fd = self._open_for_reading(queue_id)
        try:
            head = _pread_all(fd, _HEAD_READ, 0)
            prefix = decode_prefix(head)
            if len(head) < prefix.body_offset:
                head += _pread_all(fd, prefix.body_offset - len(head), len(head))
            check_header(head, prefix)
            if os.fstat(fd).st_size < prefix.tail_offset:
                raise CodecError("body truncated")
        except CodecError as exc:
            raise CorruptMessageError(f"spool file {queue_id} is damaged: {exc}") from exc
        except OSError as exc:
            raise error_from_os("read", exc) from exc
        finally:
            os.close(fd)
        return StoredBody(
            queue_id,
            os.path.join(self._dir, queue_id),
            prefix.body_offset,
            prefix.body_len,
            prefix.body_crc,
        )

    # --- recovery -------------------------------------------------------------------------

    def _is_abandoned_temp(self, entry: os.DirEntry[str]) -> bool:
        parts = entry.name.split(".", 2)
        try:
            pid = int(parts[1])
        except (IndexError, ValueError):
            return True
        if pid == self._pid:
            return not temps.contains(os.path.join(self._dir, entry.name))
        if not _pid_alive(pid):
            return True
        try:
            age = time.time() - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            return False
        return age > STALE_TEMP_AGE

    def _recover_file(self, path: str, name: str, started_ns: int | None = None) -> Envelope | None:
        try:
            fd = os.open(path, os.O_RDWR | _O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError:
            log.exception("spool: cannot open %s; left in place", path)
            return None
        try:
            stat = os.fstat(fd)
            if started_ns is not None and stat.st_mtime_ns > started_ns:
                return None  # written by this run: the hand-off (or adoption) has it
            if stat.st_size == 0:
                # A reserved name nobody stored into (spool.names), unless it is ours or
                # a receiver's that started with this run. File times come from a coarse
                # clock (a kernel tick), hence the margin; receivers take far longer than
                # that to start and reserve.
                recent = started_ns is not None and stat.st_mtime_ns > started_ns - _MTIME_MARGIN_NS
                if not recent and not self._names.holds(name):
                    gone = self._unlink_quietly(path)
                    with self._count_lock:  # readers run in threads (recover)
                        self.unused_names_removed += gone
                return None
            head = _pread_all(fd, _HEAD_READ, 0)
            prefix = decode_prefix(head)
            if len(head) < prefix.body_offset:
                head += _pread_all(fd, prefix.body_offset - len(head), len(head))
            envelope = decode_envelope(check_header(head, prefix))
            if envelope.queue_id != name:
                raise CodecError(f"file holds queue id {envelope.queue_id!r}")
            size = stat.st_size
            if size < prefix.tail_offset:
                raise CodecError(f"body truncated ({size} < {prefix.tail_offset} octets)")
            tail = _pread_all(fd, size - prefix.tail_offset, prefix.tail_offset)
            valid = apply_records(envelope, tail)
            if valid < len(tail):
                log.warning(
                    "spool: %s: dropping %d octets of torn status record",
                    name,
                    len(tail) - valid,
                )
                os.ftruncate(fd, prefix.tail_offset + valid)
                if self._fsync:
                    _datasync(fd)
            return envelope
        except UnsupportedFormatError as exc:
            log.error("spool: %s: %s; left in place", name, exc)
            return None
        except CodecError as exc:
            self._quarantine(path, name, str(exc))
            return None
        except OSError:
            log.exception("spool: cannot recover %s; left in place", path)
            return None
        finally:
            os.close(fd)

    def _quarantine(self, path: str, name: str, reason: str) -> None:
        target_dir = self.directory / QUARANTINE_DIR
        try:
            target_dir.mkdir(exist_ok=True)
            os.rename(path, target_dir / name)
        except OSError:
            log.exception("spool: %s is damaged (%s) and cannot be quarantined", name, reason)
            return
        log.error("spool: %s is damaged (%s); moved to %s", name, reason, target_dir)

    @staticmethod
    def _unlink_quietly(path: str) -> int:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return 0
        except OSError:
            log.exception("spool: cannot remove %s", path)
            return 0
        return 1
