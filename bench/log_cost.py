"""Per-record cost of the daemon log (runtime/log_file.py, runtime/logs.py).

    nice -n 10 .venv/bin/python bench/log_cost.py

Prints the best of 5 runs, in µs: a record written by the file handler with its
once-a-second rotation check, with a stat on every record, and with logging's
WatchedFileHandler; and the text and JSON formatting of a batch of mail lines, per line.
"""

from __future__ import annotations

import logging
import logging.handlers
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from outrider.runtime import log_file
from outrider.runtime.log_file import LogFileHandler
from outrider.runtime.logs import MAIL_LINES, LogSettings, formatter

LINE = (
    "1K1NBE8200800G7D000: delivered to=<b@example.org> relay=mx1.example.org "
    "[192.0.2.1] status=2.0.0 (250 2.0.0 ok)"
)


def best_us(run: Callable[[int], None], count: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        run(count)
        best = min(best, (time.perf_counter() - start) / count)
    return best * 1e6


def records(handler: logging.Handler) -> Callable[[int], None]:
    record = logging.LogRecord("outrider.mail", logging.INFO, "f", 1, "%s", (LINE,), None)

    def run(count: int) -> None:
        for _ in range(count):
            handler.handle(record)

    return run


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="outrider-log-cost-"))
    plain = logging.Formatter("%(message)s")
    ours = LogFileHandler(directory / "outrider.log")
    ours.setFormatter(plain)
    print(f"record, rotation check once a second: {best_us(records(ours), 200_000):.2f} µs")
    log_file.REOPEN_CHECK_SECONDS = 0.0
    print(f"record, stat on every record:         {best_us(records(ours), 200_000):.2f} µs")
    ours.close()
    watched = logging.handlers.WatchedFileHandler(str(directory / "watched.log"))
    watched.setFormatter(plain)
    print(f"record, WatchedFileHandler:           {best_us(records(watched), 200_000):.2f} µs")
    watched.close()
    lines = [LINE.replace("000:", f"{i:03d}:") for i in range(100)]
    batch = logging.LogRecord(
        "outrider.mail", logging.INFO, "f", 1, "%s", ("\n".join(lines),), None
    )
    batch.__dict__[MAIL_LINES] = lines
    for name in ("text", "json"):
        fmt = formatter(LogSettings("delivery", name))

        def run(count: int, fmt: logging.Formatter = fmt) -> None:
            for _ in range(count):
                fmt.format(batch)

        print(f"{name} formatting, per mail line:        {best_us(run, 2000) / 100:.2f} µs")
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()


if __name__ == "__main__":
    main()
