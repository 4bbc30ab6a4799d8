"""The web monitor's Cluster card: shown on a node with ``[cluster] redis`` (a real
redis-server on loopback), listing this node; absent elsewhere (test_monitor.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.rig import SHOP, Rig, running_rig
from tests.support.redis_server import RedisServer, own_redis

__all__ = ["own_redis"]


@pytest.fixture
def cluster_rig(tmp_path: Path, own_redis: RedisServer) -> Iterator[Rig]:
    extra = f'\n[cluster]\nredis = "{own_redis.url}"\nnode-name = "web-1"\n'
    with running_rig(tmp_path, domains=(SHOP,), extra=extra) as running:
        yield running


def test_the_cluster_card_lists_the_node_and_shared_queues(
    cluster_rig: Rig, page: Page, js_errors: list[str]
) -> None:
    page.goto(cluster_rig.base + "/")
    card = page.locator(".card", has_text="Cluster")
    expect(card).to_be_visible()
    expect(card).to_contain_text("web-1 (this node)")
    expect(card).to_contain_text("shared limits")
    assert js_errors == []
