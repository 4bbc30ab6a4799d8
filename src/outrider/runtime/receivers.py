"""Supervising the receiver processes: start them, replace one that dies, stop them.

A receiver that dies (a crash, the OOM killer, ``kill -9``) is replaced at once while
its siblings keep serving the shared port. One that keeps dying is replaced after a
back-off that doubles from :data:`RESTART_DELAY_FIRST` up to
:data:`RESTART_DELAY_MAX`; a receiver that ran for :data:`STABLE_AFTER` seconds before
dying starts the count again. Only when no receiver is listening and the last
:data:`MAX_FAILED_STARTS` replacements all exited (or hung) before listening does the
pool give up (:class:`ReceiversFailed`), so that the daemon exits non-zero and its
supervisor can act.

A receiver counts as listening once it has said so on the hand-off socket; the hand-off
server knows its process id from the socket's peer credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("outrider.daemon")

RESTART_DELAY_FIRST = 0.5  # the second death in a row waits this long, then it doubles
RESTART_DELAY_MAX = 60.0
STABLE_AFTER = 30.0  # seconds of listening after which a death is not "dying again"
READY_TIMEOUT = 30.0  # a receiver not listening by then is killed (a failed start)
MAX_FAILED_STARTS = 5


class ReceiversFailed(RuntimeError):
    """No receiver can be kept running: the daemon must stop and exit non-zero."""


@dataclass(slots=True)
class Receiver:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ready: bool = False
    deaths: int = 0  # deaths in a row, each before it had listened for STABLE_AFTER
    restart_at: float | None = None  # when a dead receiver is due to be replaced
    reload_pending: bool = False  # a SIGHUP waits until it has installed its handler


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class ReceiverPool:
    """The receiver processes of one daemon. ``spawn(index)`` starts receiver ``index``.

    :meth:`poll` (called a few times a second) reaps and replaces; until
    :meth:`supervise` is called (start-up), any death is fatal instead."""

    def __init__(
        self,
        count: int,
        spawn: Callable[[int], subprocess.Popen[bytes]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.receivers = [Receiver(index) for index in range(count)]
        self._spawn_process = spawn
        self.clock = clock
        self.failed_starts = 0  # in a row, reset when any receiver listens
        self.supervising = False
        self.stopping = False

    # -- start-up -------------------------------------------------------------------------
    def start(self) -> None:
        """Start every receiver; an error here fails the daemon's start."""
        now = self.clock()
        for receiver in self.receivers:
            receiver.process = self._spawn_process(receiver.index)
            receiver.started = now

    def all_ready(self) -> bool:
        return all(r.ready and r.process is not None for r in self.receivers)

    def supervise(self) -> None:
        """Start-up is over: from now on a dead receiver is replaced."""
        self.supervising = True

    # -- supervision ----------------------------------------------------------------------
    def poll(self, ready_pids: set[int]) -> None:
        """Note receivers that listen, reap dead ones, start replacements that are due.

        ``ready_pids``: process ids that said they listen (reaped ones are removed).
        Raises :class:`ReceiversFailed` when it gives up (during start-up: at the
        first death)."""
        now = self.clock()
        for receiver in self.receivers:
            process = receiver.process
            if process is None:
                due = receiver.restart_at
                if due is not None and now >= due and not self.stopping:
                    self._restart(receiver, now)
                continue
            if not receiver.ready and process.pid in ready_pids:
                self._listening(receiver)
            code = process.poll()
            if code is None:
                if not receiver.ready and now - receiver.started > READY_TIMEOUT:
                    log.error(
                        "receiver %d (pid %d) is not listening after %.0fs; killing it",
                        receiver.index,
                        process.pid,
                        READY_TIMEOUT,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                continue
            ready_pids.discard(process.pid)
            receiver.process = None
            if not self.stopping:
                self._died(receiver, describe_exit(code), now, pid=process.pid)

    def _listening(self, receiver: Receiver) -> None:
        receiver.ready = True
        self.failed_starts = 0
        assert receiver.process is not None
        if self.supervising:
            log.info("receiver %d (pid %d) is listening", receiver.index, receiver.process.pid)
        if receiver.reload_pending:
            receiver.reload_pending = False
            with contextlib.suppress(ProcessLookupError):
                receiver.process.send_signal(signal.SIGHUP)

    def _died(self, receiver: Receiver, how: str, now: float, *, pid: int) -> None:
        name = f"receiver {receiver.index} (pid {pid})" if pid else f"receiver {receiver.index}"
        uptime = now - receiver.started
        if not self.supervising:
            raise ReceiversFailed(f"{name} {how} during start-up")
        failed_start = not receiver.ready
        stable = receiver.ready and uptime >= STABLE_AFTER
        receiver.deaths = 1 if stable else receiver.deaths + 1
        receiver.ready = False
        delay = restart_delay(receiver.deaths)
        receiver.restart_at = now + delay
        when = "before listening" if failed_start else f"after {uptime:.1f}s"
        if delay == 0:
            log.error("%s %s %s; starting a replacement", name, how, when)
        else:
            log.error(
                "%s %s %s (%d times in a row); starting a replacement in %.1fs",
                name,
                how,
                when,
                receiver.deaths,
                delay,
            )
        if failed_start:
            self.failed_starts += 1
            self._check_give_up()

    def _restart(self, receiver: Receiver, now: float) -> None:
        receiver.restart_at = None
        receiver.started = now
        receiver.ready = False
        receiver.reload_pending = False  # it reads the config file as it starts
        try:
            receiver.process = self._spawn_process(receiver.index)
        except OSError as exc:
            self._died(receiver, f"could not be started: {exc}", now, pid=0)
            return
        log.info("receiver %d restarted (pid %d)", receiver.index, receiver.process.pid)

    def _check_give_up(self) -> None:
        if self.failed_starts < MAX_FAILED_STARTS:
            return
        if any(r.ready and r.process is not None for r in self.receivers):
            return  # the others still serve: keep trying, at the capped back-off
        raise ReceiversFailed(
            f"no receiver process is listening and the last {self.failed_starts} "
            "replacements exited before listening"
        )

    # -- signals and stop -----------------------------------------------------------------
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [r.process for r in self.receivers if r.process is not None]

    def reload(self) -> None:
        """Pass a SIGHUP on; one still starting gets it once it listens (before that, a
        SIGHUP would kill it)."""
        for receiver in self.receivers:
            if receiver.process is None:
                continue
            if not receiver.ready:
                receiver.reload_pending = True
                continue
            with contextlib.suppress(ProcessLookupError):
                receiver.process.send_signal(signal.SIGHUP)

    async def stop(self, timeout: float) -> None:
        """SIGTERM every receiver (they finish their sessions) and wait; SIGKILL stragglers."""
        self.stopping = True
        processes = self.processes()
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout + 5
        for process in processes:
            while process.poll() is None and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if process.poll() is None:
                log.warning("receiver %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()
        for receiver in self.receivers:
            receiver.process = None


def restart_delay(deaths: int) -> float:
    """Seconds before replacing a receiver that died ``deaths`` times in a row."""
    if deaths <= 1:
        return 0.0
    doublings = min(deaths - 2, 16)  # no float overflow after days of dying
    return min(RESTART_DELAY_FIRST * float(1 << doublings), RESTART_DELAY_MAX)
