"""Whether a stop may leave a schedule snapshot (runtime/daemon.py ``stop_unclean``)."""

from __future__ import annotations

import pytest

from outrider.runtime.daemon import stop_unclean

CLEAN = {
    "recovered": True,
    "settled": True,
    "notices_done": True,
    "tasks_left": 0,
    "write_failures": 0,
}


def test_a_clean_stop_may_write_a_snapshot() -> None:
    assert stop_unclean(**CLEAN) == ""  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"recovered": False}, "recovery had not finished"),
        ({"settled": False}, "deliveries had to be cancelled"),
        ({"notices_done": False}, "notices were still being stored"),
        ({"tasks_left": 2}, "2 task(s) still running"),
        ({"write_failures": 1}, "1 spool write(s) failed"),
    ],
)
def test_any_doubt_means_no_snapshot(change: dict[str, object], reason: str) -> None:
    assert reason in stop_unclean(**(CLEAN | change))  # type: ignore[arg-type]
