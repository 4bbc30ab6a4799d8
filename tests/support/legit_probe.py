"""The legitimate client of the abuse test and benchmark: a trusted sender's time-to-250.

Each probe opens a new connection from a ``relay-networks`` address, sends one message
and measures the time from connect to the ``250`` after the data, or records how it was
refused. Run as a module it probes every ``--interval`` seconds and prints one JSON line
per probe, so the benchmark can measure from a process of its own, away from the
attacking clients' event loop and its pauses::

    python -m tests.support.legit_probe --port 2525 --interval 0.5 --duration 120
"""

from __future__ import annotations

import argparse
import json
import signal
import smtplib
import sys
import time
from dataclasses import asdict, dataclass
from types import FrameType

__all__ = ["Probe", "probe_once"]

MESSAGE = b"Subject: legit\r\n\r\nA message from a trusted client.\r\n"


@dataclass(slots=True)
class Probe:
    """One message: ``started`` is monotonic (comparable across processes on Linux);
    ``seconds`` the time to the 250, None when it failed with ``error``."""

    started: float
    seconds: float | None
    error: str = ""


def probe_once(
    host: str,
    port: int,
    *,
    source: str = "127.0.0.1",
    rcpt: str = "legit@example.org",
    timeout: float = 10.0,
) -> Probe:
    """Connect from ``source``, send one message to ``rcpt``; how long until its 250."""
    started = time.monotonic()
    try:
        with smtplib.SMTP(host, port, timeout=timeout, source_address=(source, 0)) as smtp:
            smtp.sendmail("app@sender.test", [rcpt], MESSAGE)
            seconds = time.monotonic() - started
    except smtplib.SMTPResponseException as exc:  # a refusal: 421 at connect, at MAIL, ...
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        return Probe(started, None, f"{exc.smtp_code} {text}".strip())
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        return Probe(started, None, f"{code} {text.decode(errors='replace')}")
    except (OSError, smtplib.SMTPException) as exc:  # reset, timeout, disconnect
        return Probe(started, None, f"{type(exc).__name__}: {exc}")
    return Probe(started, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="probe a daemon as a trusted client")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.1")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=600.0, help="upper bound (s)")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    deadline = time.monotonic() + args.duration
    next_at = time.monotonic()
    while not stopping and time.monotonic() < deadline:
        probe = probe_once(args.host, args.port, source=args.source, timeout=args.timeout)
        sys.stdout.write(json.dumps(asdict(probe)) + "\n")
        sys.stdout.flush()
        next_at = max(next_at + args.interval, time.monotonic())
        time.sleep(max(0.0, next_at - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
