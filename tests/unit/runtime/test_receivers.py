"""The receiver pool's supervision with fake processes and a fake clock (no forks)."""

from __future__ import annotations

import logging
import signal
import subprocess
from typing import cast

import pytest

from outrider.runtime import receivers as mod
from outrider.runtime.receivers import ReceiverPool, ReceiversFailed, describe_exit, restart_delay


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)

    def kill(self) -> None:
        self.signals.append(signal.SIGKILL)
        self.returncode = -signal.SIGKILL


class Harness:
    def __init__(self, count: int) -> None:
        self.now = 1000.0
        self.spawned: list[tuple[int, FakeProcess]] = []
        self.fail_spawn = False
        self.ready: set[int] = set()
        self.pool = ReceiverPool(count, self.spawn, clock=lambda: self.now)

    def spawn(self, index: int) -> subprocess.Popen[bytes]:
        if self.fail_spawn:
            raise OSError(11, "Resource temporarily unavailable")
        process = FakeProcess(100 + len(self.spawned))
        self.spawned.append((index, process))
        return cast("subprocess.Popen[bytes]", process)

    def process(self, index: int) -> FakeProcess:
        receiver = self.pool.receivers[index]
        assert receiver.process is not None
        return cast(FakeProcess, receiver.process)

    def listen(self, index: int) -> None:
        self.ready.add(self.process(index).pid)
        self.poll()

    def die(self, index: int, code: int = -signal.SIGKILL) -> None:
        self.process(index).returncode = code
        self.poll()

    def poll(self, advance: float = 0.0) -> None:
        self.now += advance
        self.pool.poll(self.ready)

    def started(self) -> Harness:
        self.pool.start()
        for index in range(len(self.pool.receivers)):
            self.listen(index)
        assert self.pool.all_ready()
        self.pool.supervise()
        return self


def test_a_death_during_start_up_is_fatal() -> None:
    h = Harness(2)
    h.pool.start()
    h.listen(0)
    with pytest.raises(ReceiversFailed, match=r"receiver 1 \(pid 101\) exited with status 1"):
        h.die(1, 1)


def test_a_dead_receiver_is_replaced_at_once(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(2).started()
    h.now += 100
    with caplog.at_level(logging.INFO, "outrider.daemon"):
        h.die(0)
        assert h.pool.receivers[0].process is None
        h.poll()  # due now: replaced
        assert [index for index, _ in h.spawned] == [0, 1, 0]
        assert 100 not in h.ready  # a reaped pid is forgotten
        h.listen(0)
    assert "receiver 0 (pid 100) was killed by SIGKILL after 100.0s; starting a replacement" in (
        caplog.text
    )
    assert "receiver 0 restarted (pid 102)" in caplog.text
    assert h.pool.all_ready()
    assert "receiver 0 (pid 102) is listening" in caplog.text
    assert h.process(1).pid == 101  # the sibling is left alone


def test_a_receiver_that_keeps_dying_backs_off() -> None:
    h = Harness(1).started()
    delays = []
    for _ in range(6):
        h.poll(advance=5)  # listened 5 s: less than STABLE_AFTER
        h.die(0)
        receiver = h.pool.receivers[0]
        assert receiver.restart_at is not None
        delays.append(receiver.restart_at - h.now)
        h.poll(advance=delays[-1] - 0.01)
        assert receiver.process is None, "not before its delay"
        h.poll(advance=0.01)
        assert receiver.process is not None
        h.listen(0)
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]


def test_a_stable_receiver_starts_the_count_again() -> None:
    h = Harness(1).started()
    for _ in range(3):
        h.poll(advance=1)
        h.die(0)
        h.poll(advance=60)
        h.listen(0)
    assert h.pool.receivers[0].deaths == 3
    h.poll(advance=mod.STABLE_AFTER)
    h.die(0)
    assert h.pool.receivers[0].deaths == 1
    assert h.pool.receivers[0].restart_at == h.now


def test_restart_delay_is_capped() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 8)] == [0.0, 0.5, 1.0, 32.0]
    assert restart_delay(10) == restart_delay(100_000) == mod.RESTART_DELAY_MAX


def test_gives_up_when_nothing_listens_and_replacements_keep_failing() -> None:
    h = Harness(1).started()
    h.die(0)
    for attempt in range(1, mod.MAX_FAILED_STARTS + 1):
        h.poll(advance=mod.RESTART_DELAY_MAX)  # the replacement starts
        if attempt < mod.MAX_FAILED_STARTS:
            h.die(0, 1)  # and exits before listening
    with pytest.raises(ReceiversFailed, match="no receiver process is listening"):
        h.die(0, 1)


def test_a_listening_replacement_resets_the_failed_starts() -> None:
    h = Harness(1).started()
    h.die(0)
    for _ in range(mod.MAX_FAILED_STARTS - 1):
        h.poll(advance=mod.RESTART_DELAY_MAX)
        h.die(0, 1)
    h.poll(advance=mod.RESTART_DELAY_MAX)
    h.listen(0)
    assert h.pool.failed_starts == 0
    h.die(0)
    h.poll(advance=mod.RESTART_DELAY_MAX)
    h.die(0, 1)  # one failed start after a success: keep trying
    assert h.pool.failed_starts == 1


def test_keeps_trying_while_a_sibling_serves() -> None:
    h = Harness(2).started()
    h.die(0)
    for _ in range(mod.MAX_FAILED_STARTS * 2):
        h.poll(advance=mod.RESTART_DELAY_MAX)
        h.die(0, 1)
    assert h.pool.failed_starts == mod.MAX_FAILED_STARTS * 2
    # The sibling dies: its replacement still gets a try, and gives up only if it fails.
    h.die(1)
    h.poll()
    assert h.pool.receivers[1].process is not None
    with pytest.raises(ReceiversFailed):
        h.die(1, 1)


def test_a_receiver_that_never_listens_is_killed() -> None:
    h = Harness(1).started()
    h.die(0)
    h.poll()
    process = h.process(0)
    h.poll(advance=mod.READY_TIMEOUT + 1)
    assert process.signals == [signal.SIGKILL]
    h.poll()
    assert h.pool.failed_starts == 1


def test_a_failed_spawn_is_a_failed_start(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(1).started()
    h.die(0)
    h.fail_spawn = True
    with caplog.at_level(logging.ERROR, "outrider.daemon"):
        h.poll()
    assert h.pool.receivers[0].process is None
    assert h.pool.failed_starts == 1
    assert "receiver 0 could not be started: [Errno 11]" in caplog.text
    h.fail_spawn = False
    h.poll(advance=mod.RESTART_DELAY_MAX)
    assert h.pool.receivers[0].process is not None


def test_sighup_waits_until_a_receiver_listens() -> None:
    h = Harness(2).started()
    h.die(0)
    h.poll()  # receiver 0 is starting
    h.pool.reload()
    assert h.process(1).signals == [signal.SIGHUP]
    assert h.process(0).signals == []  # it would die of it before installing its handler
    h.listen(0)
    assert h.process(0).signals == [signal.SIGHUP]


def test_no_replacement_while_stopping() -> None:
    h = Harness(1).started()
    h.pool.stopping = True
    h.die(0)
    h.poll(advance=100)
    assert len(h.spawned) == 1


@pytest.mark.parametrize(
    ("code", "text"),
    [(-9, "was killed by SIGKILL"), (1, "exited with status 1"), (-200, "killed by signal 200")],
)
def test_describe_exit(code: int, text: str) -> None:
    assert text in describe_exit(code)
