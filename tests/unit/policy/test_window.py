from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outrider.policy.window import ConcurrencyWindow, DeadDestination


def test_starts_at_initial_clamped_to_maximum() -> None:
    assert ConcurrencyWindow(maximum=20).limit == 5
    assert ConcurrencyWindow(initial=2, maximum=20).limit == 2
    assert ConcurrencyWindow(initial=5, maximum=3).limit == 3


@pytest.mark.parametrize(("initial", "maximum"), [(0, 5), (1, 0)])
def test_invalid_arguments(initial: int, maximum: int) -> None:
    with pytest.raises(ValueError):
        ConcurrencyWindow(initial=initial, maximum=maximum)


def test_grows_by_one_per_window_of_successes() -> None:
    w = ConcurrencyWindow(initial=2, maximum=10)
    for _ in range(1):
        w.on_success()
    assert w.limit == 2
    w.on_success()
    assert w.limit == 3  # 2 successes at window 2
    for _ in range(2):
        w.on_success()
    assert w.limit == 3
    w.on_success()
    assert w.limit == 4  # 3 more at window 3


def test_grows_to_maximum_and_stays() -> None:
    w = ConcurrencyWindow(initial=1, maximum=8)
    for _ in range(1000):
        w.on_success()
    assert w.limit == 8
    # 1 + 2 + ... + 7 successes are exactly enough
    w2 = ConcurrencyWindow(initial=1, maximum=8)
    for _ in range(sum(range(1, 8)) - 1):
        w2.on_success()
    assert w2.limit == 7
    w2.on_success()
    assert w2.limit == 8


def test_first_failure_shrinks_at_once_then_one_per_window() -> None:
    w = ConcurrencyWindow(initial=10, maximum=10)
    w.on_failure()
    assert w.limit == 9
    # 0.9 credit left, 1/9 per failure at window 9: the 8th further failure is a step
    for _ in range(7):
        w.on_failure()
    assert w.limit == 9
    w.on_failure()
    assert w.limit == 8


def test_never_below_one() -> None:
    w = ConcurrencyWindow(initial=3, maximum=5)
    for _ in range(100):
        w.on_failure()
    assert w.limit == 1
    w.on_success()
    assert w.limit == 2  # one success at window 1 is a full step


def test_failure_resets_growth_progress() -> None:
    w = ConcurrencyWindow(initial=4, maximum=10)
    for _ in range(3):
        w.on_success()
    w.on_failure()
    assert w.limit == 3
    for _ in range(2):
        w.on_success()
    assert w.limit == 3  # progress toward 5 was dropped


def test_only_grows_while_used() -> None:
    w = ConcurrencyWindow(initial=2, maximum=20)
    for _ in range(100):
        w.on_success(busy=1)
    assert w.limit == 3  # never above busy + initial
    for _ in range(100):
        w.on_success(busy=3)
    assert w.limit == 5


def test_set_maximum_clamps_and_does_not_jump_up() -> None:
    w = ConcurrencyWindow(initial=5, maximum=10)
    w.set_maximum(2)
    assert w.limit == 2
    w.set_maximum(20)
    assert w.limit == 2
    w.on_success()
    assert w.limit == 2  # the clamp dropped any growth progress: 2 successes at window 2
    w.on_success()
    assert w.limit == 3
    with pytest.raises(ValueError):
        w.set_maximum(0)


def test_shrinking_rounds_at_half_a_step() -> None:
    """After 3 -> 2 the credit is 2/3; a failure at window 2 costs 1/2, leaving 1/6: less
    than half a step (1/4) above zero, so the window shrinks again."""
    w = ConcurrencyWindow(initial=3, maximum=3)
    w.on_failure()
    assert w.limit == 2
    w.on_failure()
    assert w.limit == 1


def test_exactly_half_a_step_of_credit_keeps_the_window() -> None:
    w = ConcurrencyWindow(initial=4, maximum=5)
    w.on_failure()  # 4 -> 3, credit 3/4
    w.set_maximum(2)  # 3 -> 2, the failure credit stays
    w.on_failure()  # costs 1/2: 1/4 left, exactly half a step at window 2
    assert w.limit == 2


def test_the_first_failure_after_growing_shrinks_at_once() -> None:
    w = ConcurrencyWindow(initial=1, maximum=2)
    w.on_success()
    assert w.limit == 2
    w.on_failure()
    assert w.limit == 1


@pytest.mark.parametrize(("initial", "successes"), [(1, 1), (1, 5), (2, 5)])
def test_successes_at_the_ceiling_bank_nothing(initial: int, successes: int) -> None:
    """Once the ceiling is raised the window earns each step again: 2 successes at 2,
    whether it reached the ceiling with its last success or was there already."""
    w = ConcurrencyWindow(initial=initial, maximum=2)
    for _ in range(successes):
        w.on_success()
    assert w.limit == 2
    w.set_maximum(6)
    w.on_success()
    assert w.limit == 2
    w.on_success()
    assert w.limit == 3


def test_a_ceiling_equal_to_the_window_keeps_its_progress() -> None:
    w = ConcurrencyWindow(initial=2, maximum=6)
    w.on_success()  # half way to 3
    w.set_maximum(2)  # no clamp needed: nothing is lost
    w.set_maximum(6)
    w.on_success()
    assert w.limit == 3


@settings(max_examples=100, deadline=None)
@given(
    initial=st.integers(1, 30),
    maximum=st.integers(1, 30),
    events=st.lists(st.sampled_from(["ok", "fail", "max"]), max_size=300),
    new_maxima=st.lists(st.integers(1, 30), min_size=1, max_size=5),
)
def test_window_stays_within_bounds(
    initial: int, maximum: int, events: list[str], new_maxima: list[int]
) -> None:
    w = ConcurrencyWindow(initial=initial, maximum=maximum)
    for i, event in enumerate(events):
        before = w.limit
        if event == "ok":
            w.on_success()
            assert before <= w.limit <= before + 1
        elif event == "fail":
            w.on_failure()
            assert max(before - 1, 1) <= w.limit <= before
        else:
            w.set_maximum(new_maxima[i % len(new_maxima)])
        assert 1 <= w.limit <= w.maximum


# --- dead destinations ---


def test_one_failure_at_concurrency_one_kills_with_default_limit() -> None:
    d = DeadDestination(dead_for=300)
    assert not d.is_dead(0)
    d.on_failure(10.0)
    assert d.is_dead(10.0)
    assert d.next_deadline() == 310.0


def test_a_cohort_is_one_window_of_failures() -> None:
    d = DeadDestination(cohort_limit=2, dead_for=60)
    for _ in range(9):
        d.on_failure(0.0, concurrency=5)
    assert not d.is_dead(0.0)
    d.on_failure(0.0, concurrency=5)  # 10 failures at window 5: two cohorts
    assert d.is_dead(0.0)


def test_success_resets_the_cohort_count() -> None:
    d = DeadDestination(cohort_limit=1)
    for _ in range(4):
        d.on_failure(0.0, concurrency=5)
    d.on_success(1.0)
    assert d.failed_cohorts == 0
    for _ in range(4):
        d.on_failure(2.0, concurrency=5)
    assert not d.is_dead(2.0)


def test_probe_after_dead_for_and_revival() -> None:
    d = DeadDestination(dead_for=300)
    d.on_failure(0.0)
    assert d.is_dead(100.0)
    assert not d.allow_probe(299.0)
    assert d.allow_probe(300.0)
    assert d.is_dead(300.0)  # only the probe may go
    assert not d.allow_probe(300.5)  # a single probe
    d.on_success(301.0)
    assert not d.is_dead(301.0)
    assert d.next_deadline() is None
    assert not d.allow_probe(1000.0)


def test_failed_probe_rearms() -> None:
    d = DeadDestination(dead_for=300)
    d.on_failure(0.0)
    assert d.allow_probe(300.0)
    d.on_failure(310.0)
    assert d.is_dead(500.0)
    assert not d.allow_probe(609.0)
    assert d.allow_probe(610.0)


def test_stragglers_do_not_extend_death() -> None:
    d = DeadDestination(dead_for=300)
    d.on_failure(0.0)
    d.on_failure(200.0)  # a connection that was already in flight
    assert d.allow_probe(300.0)


def test_lost_probe_is_replaced() -> None:
    d = DeadDestination(dead_for=60)
    d.on_failure(0.0)
    assert d.allow_probe(60.0)
    assert not d.allow_probe(100.0)
    assert d.allow_probe(120.0)


def test_cohort_limit_zero_disables() -> None:
    d = DeadDestination(cohort_limit=0)
    for _ in range(100):
        d.on_failure(0.0)
    assert not d.is_dead(0.0)


def test_defaults_one_cohort_and_five_minutes() -> None:
    d = DeadDestination()
    d.on_failure(0.0)
    assert d.is_dead(0.0)
    assert d.next_deadline() == 300.0


def test_death_starts_the_cohort_count_over() -> None:
    d = DeadDestination(cohort_limit=2, dead_for=60)
    d.on_failure(0.0)
    assert d.failed_cohorts == 1
    d.on_failure(0.0)
    assert d.is_dead(0.0)
    assert d.failed_cohorts == 0


def test_a_failed_probe_rearms_whatever_the_cohort_limit() -> None:
    """The probe is one attempt: its failure kills at once, not after another cohort."""
    d = DeadDestination(cohort_limit=2, dead_for=60)
    d.on_failure(0.0)
    d.on_failure(0.0)
    assert d.allow_probe(60.0)
    d.on_failure(70.0, concurrency=1)
    assert d.next_deadline() == 130.0
    assert not d.allow_probe(129.0)


@pytest.mark.parametrize("dead_for", [0.0, 0.5])
def test_dead_for_may_be_zero_or_a_fraction(dead_for: float) -> None:
    d = DeadDestination(dead_for=dead_for)
    d.on_failure(10.0)
    assert d.is_dead(10.0)
    assert d.allow_probe(10.0 + dead_for)


def test_invalid_dead_arguments() -> None:
    with pytest.raises(ValueError):
        DeadDestination(cohort_limit=-1)
    with pytest.raises(ValueError):
        DeadDestination(dead_for=-1.0)
    with pytest.raises(ValueError):
        DeadDestination(dead_for=float("nan"))


@pytest.mark.parametrize("start", [3, 6, 7, 10, 49])
def test_float_rounding_never_costs_an_extra_success(start: int) -> None:
    """Ten additions of 0.1 sum to 0.999...; the half-step rounding still grows on the 10th."""
    w = ConcurrencyWindow(initial=start, maximum=start + 1)
    for _ in range(start - 1):
        w.on_success()
    assert w.limit == start
    w.on_success()
    assert w.limit == start + 1
