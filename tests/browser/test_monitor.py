"""The web monitor in a real browser (Debian's Chromium, driven by Playwright) against
the real daemon: a paused queue shows up as paused, the Resume button drains it, the
dashboard and the live feed move, values from strangers stay text, rights hide the
buttons, and a phone-sized screen gets no sideways scrolling."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from tests.browser.rig import EVIL, SHOP, Rig
from tests.support.daemon import wait_until

MARKUP_REPLY = '451 4.7.1 <img src=x onerror="window.__xss=1"><b>greylisted</b> & try later'


def test_resume_a_paused_queue_from_the_page(rig: Rig, page: Page, js_errors: list[str]) -> None:
    # Paused by its domain before any mail comes, as `outrider pause queue shop.test` does:
    # the queue the mail joins is named by the daemon (shop.test/default).
    rig.pause(SHOP)
    page.goto(rig.base + "/#/queues")
    expect(page.locator("#role")).to_have_text("admin")
    before = len(rig.sink.messages)
    rig.send([f"user{i}@{SHOP}" for i in range(3)], count=2)

    row = page.locator("table.data tbody tr", has_text=f"{SHOP}/default")
    expect(row.locator(".badge")).to_have_text("paused", timeout=30_000)
    expect(row.locator('td[data-label="Recipients"]')).to_have_text("6")
    expect(row.locator('td[data-label="Messages"]')).to_have_text("2")
    assert len(rig.sink.messages) == before, "a paused queue delivered"

    row.get_by_role("button", name=f"Resume {SHOP}/default").click()
    expect(page.locator(".toast.ok")).to_contain_text("Resumed")
    # Drained: the queue leaves the table (no mail, no connection, not paused).
    expect(row).to_have_count(0, timeout=60_000)
    wait_until(lambda: len(rig.sink.messages) >= before + 2, 30, "the sink got the mail")
    assert rig.queue_row(SHOP) is None
    assert js_errors == []


def test_dashboard_charts_traffic_and_streams_events(
    rig: Rig, page: Page, js_errors: list[str]
) -> None:
    page.goto(rig.base + "/")
    expect(page.locator(".feed-head")).to_contain_text("streaming")
    rig.send([f"dash@{SHOP}"])
    # The live feed shows the delivery as it happens, without a reload.
    delivered = page.locator(".feed li.ev-delivered", has_text=f"dash@{SHOP}")
    expect(delivered).to_have_count(1, timeout=30_000)
    expect(page.locator(".feed li.ev-received").first).to_be_visible()
    # The per-minute chart has its four series, and counts this minute's traffic.
    traffic = page.locator(".card", has_text="Traffic per minute")
    expect(traffic.locator("polyline.series")).to_have_count(4)
    expect(traffic.locator(".legend")).to_contain_text("delivered")
    expect(page.locator(".stat.delivered .stat-value")).not_to_have_text("0", timeout=30_000)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    assert js_errors == []


def deferred_queue(rig: Rig) -> None:
    """Mail for evil.test waiting in its queue, deferred with a reply full of markup
    (sent once per module; the tests that need a queue on screen call this)."""
    rig.sink.script.rcpt_replies[f"greylisted@{EVIL}"] = MARKUP_REPLY
    if rig.queue_row(EVIL) is None:
        rig.send([f"greylisted@{EVIL}"])
    wait_until(
        lambda: "greylisted" in ((rig.queue_row(EVIL) or {}).get("last_error") or ""),
        30,
        "the deferral is recorded",
    )


def test_replies_and_names_from_strangers_stay_text(
    rig: Rig, page: Page, js_errors: list[str]
) -> None:
    deferred_queue(rig)
    page.goto(rig.base + "/#/queues")
    row = page.locator("table.data tbody tr", has_text=f"{EVIL}/default")
    expect(row.locator(".reply")).to_contain_text('<img src=x onerror="window.__xss=1">')
    row.get_by_role("link", name=f"{EVIL}/default").click()
    expect(page).to_have_url(re.compile(r"#/queues/evil\.test%2Fdefault$"))
    expect(page.locator(".replies")).to_contain_text("<b>greylisted</b> & try later")
    expect(page.locator(".head-side .badge")).to_have_text("normal")
    recipients = page.locator("table.data tbody tr", has_text=f"greylisted@{EVIL}")
    expect(recipients.locator(".badge")).to_have_text(re.compile("deferred|queued"))
    # The message page, through its link, lists the recipient's state too.
    recipients.locator("a").first.click()
    expect(page.locator("pre.headers")).to_contain_text("Subject: monitor 0")
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img, main b").count() == 0
    assert js_errors == []


def test_monitor_rights_see_no_buttons(rig: Rig, browser: Browser) -> None:
    deferred_queue(rig)
    token = rig.add_token("wallboard", "monitor")
    context = browser.new_context()
    try:
        # The monitor keeps a token in the tab's session storage and sends it on every call.
        context.add_init_script(f"sessionStorage.setItem('outrider.token', {token!r});")
        page = context.new_page()
        page.goto(rig.base + "/#/queues")
        expect(page.locator("#role")).to_have_text("read-only", timeout=30_000)
        expect(page.locator("table.data tbody tr", has_text=EVIL)).to_have_count(1)
        assert page.locator("button[data-action]").count() == 0
        page.goto(rig.base + "/#/jobs")
        expect(page.locator("h1")).to_have_text("Jobs")
        assert page.locator("button[data-action]").count() == 0
    finally:
        context.close()


def test_phone_screen_has_no_sideways_scrolling(rig: Rig, browser: Browser) -> None:
    deferred_queue(rig)
    context = browser.new_context(
        viewport={"width": 375, "height": 740}, device_scale_factor=2, is_mobile=True,
        has_touch=True,
    )  # fmt: skip
    try:
        page = context.new_page()
        for view in ("#/queues", "#/", f"#/queues/{EVIL}%2Fdefault", "#/messages", "#/vmtas"):
            page.goto(rig.base + "/" + view)
            expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=30_000)
            if view == "#/queues":
                row = page.locator("table.data tbody tr", has_text=f"{EVIL}/default")
                expect(row).to_be_visible()
                # a card: the column headings are hidden, each cell carries its label
                assert page.locator("table.data thead").is_hidden()
                box = row.bounding_box()
                assert box is not None and box["width"] <= 375
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{view}: the page scrolls sideways by {overflow}px"
    finally:
        context.close()


def test_polling_stops_while_the_tab_is_hidden(rig: Rig, page: Page) -> None:
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/api/v1/status" in r.url else None)
    page.goto(rig.base + "/#/jobs")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.evaluate(
        """() => {
        Object.defineProperty(document, "hidden", { value: true, configurable: true });
        document.dispatchEvent(new Event("visibilitychange"));
    }"""
    )
    expect(page.locator("#live")).to_have_attribute("data-state", "paused")
    page.wait_for_timeout(500)  # a poll already under way may still finish
    seen = len(polls)
    page.wait_for_timeout(5000)  # two and a half poll periods
    assert len(polls) == seen, "polled while hidden"
    page.evaluate(
        """() => {
        delete document.hidden;
        document.dispatchEvent(new Event("visibilitychange"));
    }"""
    )
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    for _ in range(60):  # Playwright delivers the request events while it waits
        if len(polls) > seen + 1:
            break
        page.wait_for_timeout(500)
    assert len(polls) > seen + 1, "polling did not resume"


def test_delete_asks_first(rig: Rig, page: Page, js_errors: list[str]) -> None:
    deferred_queue(rig)
    page.goto(rig.base + "/#/queues?q=evil")
    row = page.locator("table.data tbody tr", has_text=f"{EVIL}/default")
    dialog = page.locator("dialog#confirm")
    row.get_by_role("button", name=f"Delete the mail queued for {EVIL}/default").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"{EVIL}/default")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    page.wait_for_timeout(2500)  # a poll later, still queued
    assert rig.queue_row(EVIL) is not None

    row.get_by_role("button", name=f"Delete the mail queued for {EVIL}/default").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator(".toast.ok")).to_contain_text("Deleted 1 recipient")
    expect(row).to_have_count(0, timeout=30_000)
    assert rig.queue_row(EVIL) is None
    assert js_errors == []


HELPERS = """async () => {
  const f = await import("/static/js/format.js");
  const feed = await import("/static/js/feed.js");
  const dash = await import("/static/js/views/dashboard.js");
  const app = await import("/static/js/app.js");
  const queues = await import("/static/js/views/queues.js");
  const ui = await import("/static/js/ui.js");
  const series = dash.minuteSeries({bucket_seconds: 60, series: [
    {t: "1970-01-01T00:58:00+00:00", received: 3, delivered: 2, bounced: 0, deferred: 1}]},
    3600000);
  return {
    duration: [f.duration(45), f.duration(192), f.duration(7500), f.duration(90000)],
    bytes: [f.bytes(999), f.bytes(48211000)],
    scale: [f.niceScale(7), f.niceScale(0), f.niceScale(1800, 4, false)],
    sse: feed.parseBlocks('data: {"type":"delivered"}\\n\\n: ping\\n\\n'
      + 'event: dropped\\ndata: {"error":"x"}\\n\\ndata: {"par'),
    event: feed.normalise("", JSON.stringify({type: "queue", time: "2026-12-02T18:00:00Z",
      queue: "a.test/default", action: "backoff", diagnostic: "421 slow down"})),
    minutes: [series.times.length, series.values.received[57],
      series.values.received.reduce((a, b) => a + b, 0)],
    routes: [app.parseRoute("#/queues/mx%3Amx1.example.net%2Fdefault"),
      app.parseRoute("#/messages?rcpt=a%40b.test"), app.parseRoute("")],
    filtered: queues.filterQueues([
      {queue: "a.test/default", domain: "a.test", vmta: "default", mode: "paused"},
      {queue: "b.test/m1", domain: "b.test", vmta: "m1", mode: "normal",
       last_error: "451 Greylisted"}], {text: "grey"}).map((q) => q.queue),
    pauses: ui.pauseNames({queue: "mx:mx1.example.net/default", domain: "example.net"}),
  };
}"""


def test_the_pages_helpers(rig: Rig, page: Page) -> None:
    """The pure parts of the scripts (formatting, the SSE parser, routes, filters), run
    in the browser that runs them for real."""
    page.goto(rig.base + "/#/jobs")
    got = page.evaluate(HELPERS)
    assert got["duration"] == ["45s", "3m 12s", "2h 5m", "1d 1h"]
    assert got["bytes"] == ["999 B", "48 MB"]
    assert got["scale"] == [
        {"step": 2, "top": 8},
        {"step": 1, "top": 4},
        {"step": 500, "top": 2000},
    ]
    assert got["sse"] == {
        "events": [
            {"name": "", "data": '{"type":"delivered"}'},
            {"name": "dropped", "data": '{"error":"x"}'},
        ],
        "rest": 'data: {"par',
    }
    assert (got["event"]["type"], got["event"]["queue"], got["event"]["text"]) == (
        "queue",
        "a.test/default",
        "backoff: 421 slow down",
    )
    assert got["minutes"] == [60, 3, 3]  # the hour to 01:00, gaps filled with zeros
    assert got["routes"] == [
        {"name": "queue", "arg": "mx:mx1.example.net/default", "params": {}},
        {"name": "messages", "arg": "", "params": {"rcpt": "a@b.test"}},
        {"name": "dashboard", "arg": "", "params": {}},
    ]
    assert got["filtered"] == ["b.test/m1"]
    assert got["pauses"] == ["mx:mx1.example.net/default", "mx:mx1.example.net", "example.net"]
