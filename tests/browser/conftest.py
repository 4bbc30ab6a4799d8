"""Fixtures for the web monitor's browser tests: one daemon and one Chromium per module.

Chromium is Debian's (/usr/bin/chromium, from `make system-deps`), driven by Playwright;
nothing is downloaded. Every page goes to the daemon's loopback HTTP listener only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    expect,
    sync_playwright,
)

from tests.browser.rig import CHROMIUM, CHROMIUM_ARGS, EVIL, SHOP, Rig, running_rig

LAPTOP = {"width": 1366, "height": 900}
# The machine may be busy (other test runs): wait long for what the page should show.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("monitor"), domains=(SHOP, EVIL)) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module scope, not session: Playwright's own event loop ends with the module, before
    other modules' asyncio tests run."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (apt-get install chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=LAPTOP)
    ctx.set_default_timeout(30_000)
    yield ctx
    ctx.close()


@pytest.fixture
def js_errors() -> list[str]:
    """Uncaught exceptions, console errors and failed page assets of ``page``: a test
    asserts it stays empty. API answers are left out: a 404 from the API is an answer
    the page handles (resuming a queue tries its own name, then its domain's pause)."""
    return []


@pytest.fixture
def page(context: BrowserContext, js_errors: list[str]) -> Page:
    page = context.new_page()
    page.on("pageerror", lambda exc: js_errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: _console(msg, js_errors))
    page.on("response", lambda r: _response(r, js_errors))
    return page


def _console(msg: ConsoleMessage, errors: list[str]) -> None:
    if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
        errors.append(msg.text)


def _response(response: Response, errors: list[str]) -> None:
    if response.status >= 400 and "/api/" not in response.url:
        errors.append(f"{response.status} {response.url}")
