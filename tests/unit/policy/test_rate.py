from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outrider.policy.rate import Gcra, Rate


def run(limiter: Gcra, seconds: float, step: float = 0.01) -> list[float]:
    """Admission times when a caller asks every ``step`` seconds (a saturated queue)."""
    admitted = []
    ticks = round(seconds / step)
    for i in range(ticks + 1):
        now = i * step
        while limiter.try_acquire(now) == 0.0:
            admitted.append(now)
    return admitted


def run_sleeping(limiter: Gcra, seconds: float) -> list[float]:
    """Admission times when the caller sleeps exactly the wait it was given."""
    now = 0.0
    admitted = []
    while now <= seconds:
        wait = limiter.try_acquire(now)
        if wait == 0.0:
            admitted.append(now)
        else:
            assert wait > 0
            now += wait
    return admitted


def test_rate_per_second() -> None:
    assert Rate(100, 600).per_second == pytest.approx(1 / 6)
    assert Rate(5, 1).per_second == 5


@pytest.mark.parametrize(("count", "per"), [(-1, 1.0), (1, 0.0), (1, -5.0), (1, math.inf)])
def test_invalid_rate(count: int, per: float) -> None:
    with pytest.raises(ValueError):
        Rate(count, per)


def test_100_per_10_minutes_is_one_every_6_seconds() -> None:
    admitted = run_sleeping(Gcra(Rate(100, 600)), 600)
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(admitted)}
    assert gaps == {6.0}
    assert len(admitted) == 101  # t = 0, 6, ..., 600


def test_5_per_second_is_one_every_200ms() -> None:
    admitted = run(Gcra(Rate(5, 1)), 10, step=0.05)
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(admitted)}
    assert gaps == {0.2}


def test_refusal_says_how_long_and_consumes_nothing() -> None:
    g = Gcra(Rate(1, 10))
    assert g.try_acquire(100.0) == 0.0
    tat = g.tat
    assert g.try_acquire(103.0) == pytest.approx(7.0)
    assert g.try_acquire(104.0) == pytest.approx(6.0)
    assert g.tat == tat
    assert g.try_acquire(110.0) == 0.0


def test_no_burst_after_idle_with_burst_1() -> None:
    g = Gcra(Rate(10, 1))
    assert g.try_acquire(0.0) == 0.0
    assert g.try_acquire(1000.0) == 0.0
    assert g.try_acquire(1000.0) == pytest.approx(0.1)


def test_burst_admits_back_to_back_then_spaces() -> None:
    g = Gcra(Rate(1, 1), burst=3)
    assert [g.try_acquire(50.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert g.try_acquire(50.0) == pytest.approx(1.0)
    assert g.try_acquire(51.0) == 0.0
    assert g.try_acquire(51.0) == pytest.approx(1.0)


def test_acquire_several_at_once() -> None:
    g = Gcra(Rate(1, 1), burst=4)
    assert g.try_acquire(0.0, 3) == 0.0
    assert g.try_acquire(0.0, 2) == pytest.approx(1.0)
    assert g.try_acquire(0.0, 1) == 0.0
    with pytest.raises(ValueError):
        g.try_acquire(0.0, 5)
    with pytest.raises(ValueError):
        g.try_acquire(0.0, 0)


def test_unlimited_and_zero() -> None:
    free = Gcra(None)
    assert all(free.try_acquire(0.0) == 0.0 for _ in range(1000))
    assert free.unlimited
    stopped = Gcra(Rate(0, 60))
    assert stopped.try_acquire(0.0) == math.inf


def test_accepts_any_rate_like_object() -> None:
    class OtherRate:
        count = 2
        per_seconds = 1.0

    g = Gcra(OtherRate())
    assert g.interval == 0.5


def test_invalid_burst() -> None:
    with pytest.raises(ValueError):
        Gcra(Rate(1, 1), burst=0)


def test_set_rate_slower_rescales_the_debt() -> None:
    g = Gcra(Rate(10, 1), burst=1)
    assert g.try_acquire(0.0) == 0.0  # tat = 0.1: one interval owed
    g.set_rate(Rate(1, 60))  # backoff
    assert g.try_acquire(0.0) == pytest.approx(60.0)
    assert g.try_acquire(60.0) == 0.0
    assert g.try_acquire(61.0) == pytest.approx(59.0)


def test_set_rate_faster_forgets_the_long_backoff_wait() -> None:
    g = Gcra(Rate(1, 600))
    assert g.try_acquire(0.0) == 0.0
    assert g.try_acquire(10.0) == pytest.approx(590.0)
    g.set_rate(Rate(10, 1), now=10.0)
    assert g.try_acquire(10.0) == pytest.approx(590 / 6000)


def test_set_rate_to_and_from_unlimited() -> None:
    g = Gcra(Rate(1, 600))
    g.try_acquire(0.0)
    g.set_rate(None)
    assert g.try_acquire(1.0) == 0.0
    g.set_rate(Rate(1, 10))
    assert g.try_acquire(1.0) == 0.0
    assert g.try_acquire(2.0) == pytest.approx(9.0)


def test_set_rate_from_zero_restarts() -> None:
    g = Gcra(Rate(0, 1))
    assert g.try_acquire(5.0) == math.inf
    g.set_rate(Rate(1, 1))
    assert g.try_acquire(5.0) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(1, 50),
    per=st.sampled_from([1.0, 10.0, 60.0, 600.0, 3600.0]),
    periods=st.integers(1, 5),
    lateness=st.lists(st.floats(0.0, 1e-3), min_size=1, max_size=20),
    early_polls=st.integers(0, 3),
)
def test_admitted_count_tracks_the_rate(
    count: int, per: float, periods: int, lateness: list[float], early_polls: int
) -> None:
    """A saturated caller that sleeps the wait it is given (waking a little late, and
    sometimes polling early) gets rate x N admissions, +-1, and never two closer than
    the emission interval."""
    rate = Rate(count, per)
    interval = per / count
    seconds = per * periods
    g = Gcra(rate)
    admitted: list[float] = []
    now = 0.0
    i = 0
    while now <= seconds:
        wait = g.try_acquire(now)
        if wait == 0.0:
            admitted.append(now)
            continue
        for k in range(early_polls):  # refused early polls consume nothing
            assert g.try_acquire(now + wait * k / (early_polls + 1)) > 0.0
        now += wait + lateness[i % len(lateness)] * interval
        i += 1
    assert abs(len(admitted) - count * periods) <= 1  # rate x N, exact in integers
    assert all(b - a >= interval - 1e-6 for a, b in itertools.pairwise(admitted))


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=200),
    count=st.integers(1, 20),
    burst=st.integers(1, 4),
)
def test_never_more_than_burst_in_any_window(times: list[float], count: int, burst: int) -> None:
    """Whatever the arrival pattern, admissions conform: no span of length d holds more
    than burst + d/interval admissions."""
    g = Gcra(Rate(count, 10.0), burst=burst)
    interval = 10.0 / count
    admitted = [t for t in sorted(times) if g.try_acquire(t) == 0.0]
    for i in range(len(admitted)):
        for j in range(i + 1, len(admitted)):
            span = admitted[j] - admitted[i]
            assert j - i + 1 <= burst + span / interval + 1e-6


def test_peek_reports_the_wait_without_consuming() -> None:
    from outrider.policy.rate import Gcra, Rate

    limiter = Gcra(Rate(1, 2.0))
    assert limiter.peek(0.0) == 0.0
    assert limiter.try_acquire(0.0) == 0.0
    assert limiter.peek(0.5) == 1.5
    assert limiter.peek(0.5) == 1.5  # still nothing consumed
    assert limiter.try_acquire(2.0) == 0.0
    assert Gcra(None).peek(5.0) == 0.0


def test_peek_on_a_zero_rate_is_forever() -> None:
    """A stopped limiter must never look ready: the scheduler would spin on it."""
    stopped = Gcra(Rate(0, 60))
    assert stopped.peek(0.0) == math.inf
    assert stopped.peek(1e9) == math.inf


@pytest.mark.parametrize(("count", "per"), [(-1, 1.0), (1, 0.0), (1, -1.0)])
def test_invalid_rate_like_objects_are_refused(count: int, per: float) -> None:
    class Loose:  # not Rate: its own checks do not run
        def __init__(self) -> None:
            self.count = count
            self.per_seconds = per

    with pytest.raises(ValueError):
        Gcra(Loose())
    g = Gcra(Rate(1, 1))
    with pytest.raises(ValueError):
        g.set_rate(Loose(), now=0.0)


def test_set_rate_keeps_the_debt_owed_at_one_per_second() -> None:
    g = Gcra(Rate(1, 1))
    assert g.try_acquire(10.0) == 0.0  # tat = 11: one interval of 1 s owed
    g.set_rate(Rate(1, 4), now=10.0)
    assert g.tat == pytest.approx(14.0)
    assert g.peek(10.0) == pytest.approx(4.0)


def test_peek_is_never_negative_with_a_burst() -> None:
    g = Gcra(Rate(1, 1), burst=3)
    assert g.peek(100.0) == 0.0
    assert g.try_acquire(100.0) == 0.0
    assert g.peek(100.0) == 0.0  # two more may still go back to back
    assert g.try_acquire(100.0, 2) == 0.0
    assert g.peek(100.0) == pytest.approx(1.0)


def test_set_rate_to_one_per_second_keeps_the_debt() -> None:
    """Entering a 1/s rate while admissions are owed rescales them; it does not forgive them."""
    g = Gcra(Rate(1, 4))
    assert g.try_acquire(10.0) == 0.0  # tat = 14: one 4 s interval owed
    g.set_rate(Rate(1, 1), now=10.0)
    assert g.tat == pytest.approx(11.0)
    assert g.try_acquire(10.0) == pytest.approx(1.0)


def test_set_rate_to_unlimited_forgives_the_debt() -> None:
    g = Gcra(Rate(1, 60))
    assert g.try_acquire(0.0) == 0.0
    g.set_rate(None, now=0.0)
    assert g.tat == -math.inf  # idle: nothing owed any more


def test_set_rate_with_a_non_finite_now_leaves_the_debt_alone() -> None:
    g = Gcra(Rate(1, 10))
    assert g.try_acquire(0.0) == 0.0
    g.set_rate(Rate(1, 20), now=math.nan)
    assert g.tat == 10.0
    assert g.try_acquire(0.0) == pytest.approx(10.0)
