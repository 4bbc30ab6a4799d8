"""Deliver on arrival or at the next queue run."""

from __future__ import annotations

import pytest

from outrider.queue.delivery_mode import LoadReading, delivery_mode, next_queue_run


def mode(load: float = 0.5, **settings: object) -> tuple[str, str]:
    defaults: dict[str, object] = {
        "queue_only": False,
        "queue_only_load": None,
        "queue_remote_only": False,
    }
    chosen = delivery_mode(load=load, **(defaults | settings))  # type: ignore[arg-type]
    return chosen.name, chosen.reason


def test_immediate_by_default() -> None:
    assert mode() == ("immediate", "")
    assert mode(load=100.0) == ("immediate", "")  # no threshold: load does not matter


def test_queue_only_wins() -> None:
    assert mode(queue_only=True, queue_remote_only=True) == ("queue-only", "queue-only is set")


def test_load_threshold_switches_and_switches_back() -> None:
    assert mode(load=4.01, queue_only_load=4.0) == (
        "queue-only",
        "load average 4.01 is above queue-only-load 4",
    )
    assert mode(load=4.0, queue_only_load=4.0)[0] == "immediate"  # "exceeds" means above
    assert mode(load=1.0, queue_only_load=4.0, queue_remote_only=True)[0] == "queue-remote-only"


def test_queue_remote_only_delivers_local_mail_at_once() -> None:
    chosen = delivery_mode(queue_only=False, queue_only_load=None, queue_remote_only=True, load=0.0)
    assert (chosen.local_now, chosen.remote_now) == (True, False)


@pytest.mark.parametrize(
    ("now", "expected"), [(0.0, 300.0), (1.0, 300.0), (299.9, 300.0), (300.0, 600.0)]
)
def test_queue_runs_are_aligned_ticks(now: float, expected: float) -> None:
    assert next_queue_run(now, 300.0) == expected


def test_load_is_read_at_most_every_five_seconds() -> None:
    readings = iter([1.0, 9.0, 2.0])
    now = [0.0]
    load = LoadReading(read=lambda: next(readings), clock=lambda: now[0])
    assert load.current() == 1.0
    now[0] = 4.9
    assert load.current() == 1.0
    now[0] = 5.0
    assert load.current() == 9.0


def test_no_load_average_means_not_loaded() -> None:
    def broken() -> float:
        raise OSError("getloadavg unavailable")

    assert LoadReading(read=broken).current() == 0.0
