"""``/metrics`` lists each webhook's queue and failures, and nothing without webhooks."""

from __future__ import annotations

from outrider.http.metrics import LatencyHistogram, Snapshot, render


def test_metrics_list_each_webhook() -> None:
    plain = Snapshot({}, [], 5, None, 0, 0, 0, 1.0, LatencyHistogram())
    assert "outrider_webhook" not in render(plain)
    hooks = {"crm": {"queued": 3, "sent": 10, "failures": 2, "dropped": 0}}
    text = render(Snapshot({}, [], 5, None, 0, 0, 0, 1.0, LatencyHistogram(), webhooks=hooks))
    assert 'outrider_webhook_queued_events{webhook="crm"} 3' in text
    assert 'outrider_webhook_failures_total{webhook="crm"} 2' in text
