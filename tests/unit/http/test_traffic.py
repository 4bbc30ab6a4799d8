"""``/api/v1/traffic``: 10-second buckets summed per minute, 60 entries, oldest first."""

from __future__ import annotations

from outrider.http.traffic import per_minute
from outrider.runtime.stats import TrafficCounters


def test_per_minute_series() -> None:
    now = 7200.0 + 59.0  # inside minute 120
    counters = TrafficCounters(lambda: now)
    counters.add("received", 7200.0)
    counters.add("received", 7255.0)  # same minute, another bucket
    counters.add("delivered", 7199.0)  # the minute before
    counters.add("bounced", 7200.0 - 3600.0)  # minute 60: just out of the hour
    out = per_minute(counters.buckets, now)
    series = out["series"]
    assert out["bucket_seconds"] == 60 and len(series) == 60
    assert series[-1]["t"] == "1970-01-01T02:00:00+00:00"
    assert series[-1]["received"] == 2 and series[-2]["delivered"] == 1
    assert sum(s["bounced"] for s in series) == 0
    assert [s["t"] for s in series] == sorted(s["t"] for s in series)


def test_bounces_are_counted_by_category() -> None:
    from outrider.events.types import Bounced, Deferred, MessageInfo

    info = MessageInfo("Q1", "s@x.test", 1.0, "", "", "", 10)
    where = ("mx", "x.test/default", "default")

    def event(cls: type[Bounced] | type[Deferred], category: str) -> Bounced | Deferred:
        return cls(2.0, info, "r@x.test", "", "5.1.1", "550 no", *where, category=category)

    counters = TrafficCounters(lambda: 2.0)
    counters.handle(
        [
            event(Bounced, "bad-mailbox"),
            event(Bounced, "bad-mailbox"),
            event(Bounced, ""),  # built without a category: counted as other
            event(Deferred, "quota-issues"),  # deferrals are not bounces
        ]
    )
    assert counters.bounce_categories == {"bad-mailbox": 2, "other": 1}
    assert counters.total["bounced"] == 3
