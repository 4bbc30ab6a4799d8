"""The monitor where the network grants no rights: it asks for a token, keeps it for the
tab, and sends it with every call, the event stream included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.rig import SHOP, Rig, running_rig


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A daemon whose HTTP listener gives loopback no rights: only tokens work."""
    with running_rig(
        tmp_path_factory.mktemp("login"), http="admin-networks = []\nmonitor-networks = []"
    ) as running:
        running.token = running.add_token("tests", "admin")
        yield running


def test_asks_for_a_token_and_uses_it(rig: Rig, page: Page, js_errors: list[str]) -> None:
    rig.pause(SHOP)
    rig.send([f"login@{SHOP}"])
    token = rig.add_token("ops", "admin")
    page.goto(rig.base + "/#/queues")
    login = page.locator("dialog#login")
    expect(login).to_be_visible()
    expect(page.locator("#live")).to_have_attribute("data-state", "signed out")
    login.get_by_label("Bearer token").fill(token)
    login.get_by_role("button", name="Use token").click()
    expect(page.locator("#role")).to_have_text("admin")
    row = page.locator("table.data tbody tr", has_text=f"{SHOP}/default")
    expect(row.locator(".badge")).to_have_text("paused", timeout=30_000)
    expect(row.get_by_role("button", name=f"Resume {SHOP}/default")).to_be_visible()
    # the event stream, read with the token too
    page.goto(rig.base + "/#/")
    expect(page.locator(".feed-head")).to_contain_text("streaming")
    rig.api("POST", f"/api/v1/queues/{SHOP}/resume")
    expect(page.locator(".feed li.ev-delivered", has_text=f"login@{SHOP}")).to_have_count(
        1, timeout=30_000
    )
    assert js_errors == []
