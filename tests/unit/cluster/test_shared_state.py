"""The pure parts of the cluster-wide state: last writer wins, stamps, rates, the table."""

from __future__ import annotations

from outrider.admin.tables import cluster
from outrider.cluster.shared_state import Stamp, newer
from outrider.cluster.view import RateSampler
from outrider.queue.model import DeliveryQueue


def test_last_writer_wins_and_ties_go_to_the_greater_node() -> None:
    old = Stamp("queue", "example.org", True, 0.0, 100.0, "n1")
    assert newer(old, None)
    assert newer(Stamp("queue", "example.org", False, 0.0, 101.0, "n0"), old)
    assert not newer(Stamp("queue", "example.org", False, 0.0, 99.0, "n2"), old)
    assert newer(Stamp("queue", "example.org", False, 0.0, 100.0, "n2"), old)
    assert not newer(Stamp("queue", "example.org", False, 0.0, 100.0, "n0"), old)


def test_stamps_round_trip_and_bad_ones_are_ignored() -> None:
    stamp = Stamp("backoff", "mx:a.example/default", True, 5.0, 7.5, "n1")
    assert Stamp.parse(stamp.field, stamp.to_json()) == stamp
    assert Stamp.of_list(stamp.field, stamp.as_list()) == stamp
    assert Stamp.parse("nonsense:x", stamp.to_json()) is None
    assert Stamp.parse("queue:x", "{not json") is None
    assert Stamp.parse("queue:", stamp.to_json()) is None
    assert Stamp.of_list("queue:x", ["too", "short"]) is None


def test_rate_sampler_measures_per_queue_rates() -> None:
    sampler = RateSampler()
    queue = DeliveryQueue.__new__(DeliveryQueue)
    queue.key, queue.vmta, queue.delivered, queue.failed, queue.deferred = "a", "v", 0, 0, 0
    queue.active = 0
    queue.name = "a/v"  # set by __post_init__, which __new__ skips
    assert sampler.sample(0.0, [queue]) == {}
    queue.delivered = 20
    assert sampler.sample(2.0, [queue]) == {"a/v": {"rate": 10.0, "connections": 0}}


def test_show_cluster_table() -> None:
    text = cluster(
        {
            "node": "n0",
            "redis_up": True,
            "nodes": [{"node": "n0", "age": 1.0, "self": True}, {"node": "n1", "age": 2.5}],
            "queues": [
                {
                    "queue": "q/default",
                    "leases": {"n0": 2, "n1": 1},
                    "leases_total": 3,
                    "rate": 12.5,
                    "booked_ahead": 0.1,
                    "mode": "backoff",
                    "paused": False,
                }
            ],
        }
    )
    assert "n0 (this node)" in text and "n0=2 n1=1" in text and "12.5/s" in text
    assert "backoff" in text
