"""Take the web monitor's screenshots for docs/operations.md, from real traffic.

    .venv/bin/python -m tests.browser.screenshots [--minutes 5] [--out docs/img]

Starts a daemon (loopback DNS and SMTP sink, as the browser tests do), opens the
dashboard in Chromium, sends mail to a few domains for ``--minutes`` (some delivered,
some deferred, bounced, throttled into backoff, one domain paused), then saves
``monitor-dashboard.png`` and ``monitor-queues.png`` at laptop size.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from tests.browser.rig import CHROMIUM, CHROMIUM_ARGS, Rig, running_rig

VIEWPORT = {"width": 1440, "height": 900}
# domain -> (share of the mail, what the sink answers its recipients)
DOMAINS: dict[str, tuple[int, str | None]] = {
    "northwind.test": (8, None),
    "contoso.test": (5, None),
    "litware.test": (3, None),
    "fabrikam.test": (2, "451 4.7.1 Greylisted, please try again later"),
    "tailspin.test": (2, "421 4.7.28 Our system has detected rate limited traffic from you"),
    "adatum.test": (1, "550 5.1.1 The email account that you tried to reach does not exist"),
    "wingtip.test": (1, None),  # paused by the operator
}
PAUSED = "wingtip.test"
# the senders' domains, routed to the sink too: bounces (DSNs) go there
SENDER_DOMAINS = ("news.outrider.test", "billing.outrider.test", "ops.outrider.test")
SETTINGS = {
    "fabrikam.test": 'retry-after = ["7m"]',
    "tailspin.test": 'retry-after = ["4m"]\nsmtp-pattern-list = "throttle"\nmax-smtp-out = 4',
}
EXTRA = """
[smtp-pattern-list.throttle]
rules = [{ reply = "rate limited", action = "mode=backoff" }]

[virtual-mta.mta1]
smtp-source-host = "127.0.0.1 mta1.outrider.test"

[virtual-mta.mta2]
smtp-source-host = "127.0.0.1 mta2.outrider.test"

[sender-domain."news.outrider.test"]
virtual-mta = "mta1"

[sender-domain."billing.outrider.test"]
virtual-mta = "mta2"
"""
SENDERS = [("news@news.outrider.test", b"X-Job: spring-sale\r\n"),
           ("invoices@billing.outrider.test", b"X-Job: invoices-dec\r\n"),
           ("alerts@ops.outrider.test", b"")]  # fmt: skip


def recipients(rng: random.Random, n: int) -> list[str]:
    names = list(DOMAINS)
    weights = [DOMAINS[d][0] for d in names]
    return [f"user{rng.randrange(400)}@{rng.choices(names, weights)[0]}" for _ in range(n)]


def script_replies(rig: Rig) -> None:
    """Every address of the failing domains gets its domain's reply from the sink."""
    for domain, (_, reply) in DOMAINS.items():
        if reply:
            for i in range(400):
                rig.sink.script.rcpt_replies[f"user{i}@{domain}"] = reply


def traffic(rig: Rig, minutes: float, stop: threading.Event) -> None:
    """A day-like wave: a few messages a second, more at the crest, over ``minutes``."""
    rng = random.Random(9)
    end = time.monotonic() + minutes * 60
    for tick in itertools.count():
        if stop.is_set() or time.monotonic() > end:
            return
        rate = 2 + 4 * (1 + math.sin(tick / 25)) + rng.random() * 2
        for _ in range(int(rate)):
            sender, headers = rng.choice(SENDERS)
            rig.send(recipients(rng, rng.choice([1, 1, 2, 3])), headers=headers, sender=sender)
        time.sleep(1)


def shoot(page: Page, path: Path) -> None:
    page.wait_for_timeout(2500)  # one more poll, charts redrawn
    page.mouse.move(0, 0)
    page.screenshot(path=str(path), full_page=False)
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to send mail")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_rig(
            Path(tmp) / "d", domains=(*DOMAINS, *SENDER_DOMAINS), settings=SETTINGS, extra=EXTRA
        ) as rig,
        sync_playwright() as p,
    ):
        script_replies(rig)
        rig.pause(PAUSED)
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT, color_scheme="light")
        page.goto(rig.base + "/")
        stop = threading.Event()
        sender = threading.Thread(target=traffic, args=(rig, args.minutes, stop))
        sender.start()
        try:  # taken while mail still flows, so connections and the feed show it
            sender.join(max(0.0, args.minutes * 60 - 15))
            shoot(page, args.out / "monitor-dashboard.png")
            page.goto(rig.base + "/#/queues")
            shoot(page, args.out / "monitor-queues.png")
        finally:
            stop.set()
            sender.join()
        browser.close()


if __name__ == "__main__":
    main()
