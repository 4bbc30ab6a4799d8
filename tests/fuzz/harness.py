"""The fuzz budget: which profile runs, how many inputs each target gets, and a count.

Two hypothesis profiles, registered when this module is imported: ``short`` for the
default suite and ``fuzz`` for ``make fuzz``, chosen by the ``HYPOTHESIS_PROFILE``
environment variable. They are never loaded globally, so the hypothesis tests elsewhere
keep their own settings; each target takes its settings from :func:`fuzz_target`, which
also counts every input it runs (generation, replay and shrinking alike) and stops an
input that spins: a hang in sans-I/O code burns CPU, so a CPU-time timer catches it where
a wall-clock deadline, only checked once the input returns, never would.
"""

from __future__ import annotations

import atexit
import functools
import gc
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase, ReadOnlyDatabase
from hypothesis.errors import UnsatisfiedAssumption

F = TypeVar("F", bound=Callable[..., None])

PROFILE_ENV = "HYPOTHESIS_PROFILE"
SCALE_ENV = "FUZZ_SCALE"
COUNTS_ENV = "FUZZ_COUNTS_FILE"  # where tests/fuzz/run.py collects each process's counts
SHORT = "short"
FUZZ = "fuzz"
CORPUS = Path(__file__).parent / "corpus"
EXAMPLES_DIR = CORPUS / "examples"  # hypothesis' database: failing inputs, replayed first

# The fuzz run gives a target BASE_EXAMPLES[FUZZ] * weight inputs, more than a million
# in all (see ``total_budget``); the short run gives each a few hundred, by weight, so
# that it stays well under 30 s.
BASE_EXAMPLES = {SHORT: 25, FUZZ: 20_000}
SHORT_RANGE = (100, 300)
MINIMUM_FUZZ_TOTAL = 1_000_000
# CPU time one input may take before it fails as a hang or a blow-up. CPU time, not wall
# time: the machine may be busy and the run niced, and hypothesis' deadline only looks at
# the clock once an input has returned, so it would neither be fair nor catch a hang.
# Garbage collection does not count (see _Watchdog).
CPU_LIMITS = {SHORT: 10.0, FUZZ: 1.0}

RUNS: Counter[str] = Counter()  # inputs run to the end (passed or failed) per target
REJECTED: Counter[str] = Counter()  # inputs a target discarded with assume()
WEIGHTS: dict[str, float] = {}  # declared weight per target, for the budget


class FuzzHang(Exception):
    """One input used more than its profile's ``CPU_LIMITS`` of CPU time."""


def profile_name() -> str:
    name = os.environ.get(PROFILE_ENV, SHORT)
    if name not in BASE_EXAMPLES:
        raise ValueError(f"{PROFILE_ENV} must be one of {sorted(BASE_EXAMPLES)}, not {name!r}")
    return name


def register_profiles() -> None:
    """Register ``short`` and ``fuzz`` (done on import, before any target is decorated)."""
    common: dict[str, Any] = {
        "deadline": None,  # see CPU_LIMITS
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
        "print_blob": True,
    }
    writable = DirectoryBasedExampleDatabase(EXAMPLES_DIR)
    settings.register_profile(
        SHORT,
        max_examples=BASE_EXAMPLES[SHORT],
        database=ReadOnlyDatabase(writable),  # replays the corpus, never writes the tree
        **common,
    )
    settings.register_profile(FUZZ, max_examples=BASE_EXAMPLES[FUZZ], database=writable, **common)


def scale() -> float:
    """``FUZZ_SCALE`` (default 1) multiplies the fuzz run's inputs, for a quicker trial."""
    return float(os.environ.get(SCALE_ENV, "1"))


def examples_for(weight: float, profile: str | None = None) -> int:
    name = profile or profile_name()
    examples = max(1, round(BASE_EXAMPLES[name] * weight * (scale() if name == FUZZ else 1)))
    return min(max(examples, SHORT_RANGE[0]), SHORT_RANGE[1]) if name == SHORT else examples


def total_budget(profile: str | None = None) -> int:
    """Inputs the declared targets are set to generate (before replay and shrinking)."""
    return sum(examples_for(w, profile) for w in WEIGHTS.values())


def count_table(counts: dict[str, list[int]]) -> list[str]:
    """Lines of a table: inputs run and rejected per target, and the totals."""
    width = max(len("target"), *map(len, counts))
    lines = [f"{'target':<{width}}  {'inputs':>10}  {'rejected':>9}"]
    for name, (runs, rejected) in sorted(counts.items()):
        lines.append(f"{name:<{width}}  {runs:>10,}  {rejected:>9,}")
    runs, rejected = (sum(column) for column in zip(*counts.values(), strict=True))
    lines.append(f"{'total':<{width}}  {runs:>10,}  {rejected:>9,}")
    return lines


class _Watchdog:
    """A CPU-time timer around one input that stops while the garbage collector runs.

    A full collection of hypothesis' own data (hundreds of MB late in a long run) can
    take a second; it says nothing about the input, and an exception raised from the
    signal handler inside a gc callback would be lost. ``expired`` catches any other
    place that swallows it (a ``__del__``)."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.expired = False
        self._left = 0.0  # timer value saved while a collection runs

    def __enter__(self) -> _Watchdog:
        self._previous = signal.signal(signal.SIGVTALRM, self._fire)
        gc.callbacks.insert(0, self._gc_start)  # first to run when a collection starts
        gc.callbacks.append(self._gc_stop)  # last to run when it stops
        signal.setitimer(signal.ITIMER_VIRTUAL, self.limit)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        gc.callbacks.remove(self._gc_start)
        gc.callbacks.remove(self._gc_stop)
        signal.signal(signal.SIGVTALRM, self._previous)

    def check(self) -> None:
        if self.expired:
            raise FuzzHang(f"one input used more than {self.limit} s of CPU time")

    def _fire(self, signum: int, frame: FrameType | None) -> None:
        self.expired = True
        self.check()

    def _gc_start(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._left = signal.setitimer(signal.ITIMER_VIRTUAL, 0)[0]

    def _gc_stop(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and self._left > 0:
            signal.setitimer(signal.ITIMER_VIRTUAL, self._left)
            self._left = 0.0


def fuzz_target(
    weight: float = 1.0, *, short: int | None = None, **overrides: Any
) -> Callable[[F], F]:
    """Apply under ``@given``: the profile's settings scaled by ``weight``, counted, watched.

    ``weight`` lets cheap targets take a larger share of the fuzz run's inputs; ``short``
    replaces the short run's count; ``overrides`` are further hypothesis settings.
    """

    def decorate(test: F) -> F:
        name = f"{test.__module__.rpartition('.')[2]}::{test.__name__}"
        WEIGHTS[name] = weight
        cpu_limit = CPU_LIMITS[profile_name()]

        @functools.wraps(test)
        def counted(*args: Any, **kwargs: Any) -> None:
            try:
                with _Watchdog(cpu_limit) as watchdog:
                    test(*args, **kwargs)
                    watchdog.check()
            except UnsatisfiedAssumption:
                REJECTED[name] += 1
                raise
            except Exception:
                RUNS[name] += 1  # a failure: hypothesis shrinks and reports it
                raise
            else:
                RUNS[name] += 1

        profile = settings.get_profile(profile_name())
        examples = examples_for(weight)
        if short is not None and profile_name() == SHORT:
            examples = short
        chosen = settings(profile, max_examples=examples, **overrides)
        return chosen(counted)  # type: ignore[return-value]

    return decorate


def _write_counts() -> None:
    """At exit, for tests/fuzz/run.py: the inputs this process ran and its CPU time."""
    if RUNS and (path := os.environ.get(COUNTS_ENV)):
        counts = {name: [RUNS[name], REJECTED[name]] for name in RUNS}
        report = {"counts": counts, "cpu_seconds": time.process_time()}
        Path(path).write_text(json.dumps(report))


register_profiles()
atexit.register(_write_counts)
