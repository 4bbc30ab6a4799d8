"""Cost of classifying one bounce or deferral (policy/bounce_category.py).

    nice -n 10 .venv/bin/python bench/bounce_category.py

Prints the best of 5 runs, in µs per call, with the shipped rules: a reply no rule
matches (every rule is tried, then the status code decides), replies matched by an early
and by a late rule, each text new to the cache; and a text seen before (the cache). A
delivered recipient is not classified at all (settle() only asks for bounces and
deferrals), so it costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from outrider.policy.bounce_category import BounceClassifier, shipped_rules

# Real-looking replies, each ~150-250 characters like the providers' texts.
NO_MATCH = (
    "550 5.0.0 <r{n}@example.org>: the remote system said something we have no rule for, "
    "with a tracking token {n} and a host name mx{n}.example.org appended at the end"
)
EARLY = (
    "554 5.7.1 Service unavailable; Client host [192.0.2.{n}] blocked using zen.spamhaus.org; "
    "https://www.spamhaus.org/query/ip/192.0.2.1"
)
LATE = (
    "550 5.1.1 <r{n}@example.org>: Recipient address rejected: User unknown in virtual "
    "mailbox table"
)
GMAIL = (
    "550-5.1.1 The email account that you tried to reach does not exist. Please try "
    "550-5.1.1 double-checking the recipient's email address for typos or 550 5.1.1 "
    "unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser x{n}si - gsmtp"
)


def best_us(run: Callable[[int], None], count: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        run(count)
        best = min(best, (time.perf_counter() - start) / count)
    return best * 1e6


def uncached_loop(template: str, count: int) -> float:
    """Best per-call µs of classifying ``count`` texts the cache has never seen."""
    best = float("inf")
    for _ in range(5):
        classifier = BounceClassifier(shipped_rules())
        texts = [template.format(n=n) for n in range(count)]
        classify = classifier.classify
        start = time.perf_counter()
        for text in texts:
            classify("5.0.0", text)
        best = min(best, (time.perf_counter() - start) / count)
    return best * 1e6


def cached(count: int) -> None:
    classifier = BounceClassifier(shipped_rules())
    classify = classifier.classify
    text = LATE.format(n=1)
    for _ in range(count):
        classify("5.1.1", text)


def main() -> None:
    print(f"shipped rules: {len(shipped_rules())}")
    n = 2000
    print(f"no rule matches (uncached):      {uncached_loop(NO_MATCH, n):7.2f} µs")
    print(f"early rule, spamhaus (uncached): {uncached_loop(EARLY, n):7.2f} µs")
    print(f"Gmail 5.1.1 text (uncached):     {uncached_loop(GMAIL, n):7.2f} µs")
    print(f"late rule, user unknown (uncached): {uncached_loop(LATE, n):4.2f} µs")
    print(f"same text again (cached):        {best_us(cached, 200_000):7.2f} µs")


if __name__ == "__main__":
    main()
