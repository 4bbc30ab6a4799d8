"""The daemon log's mail lines: an event subscriber logging one INFO line per event.

A message is logged when it is received (queued) and each recipient when it is finally
delivered or bounced, keyed by the queue id, so ``grep <queue id>`` on the daemon log
follows a message::

    1A2B3C: received from=<a@example.com> size=1234 nrcpt=2 vmta=default
    1A2B3C: delivered to=<b@example.org> relay=mx.example.org [192.0.2.1] status=2.0.0 (250 ok)
    1A2B3C: bounced to=<c@x.org> relay=mx.x.org status=5.1.1 category=bad-mailbox (550 no)

(the bounce category is PowerMTA's, see docs/bounces.md). Deferrals are not logged here
(the accounting log has them). This runs for every recipient on the delivery path: when
INFO is off for ``outrider.mail`` it costs one ``isEnabledFor`` call per batch; otherwise
an f-string per line (~1 µs), gathered for up to 0.1 s into one log record (~15 µs),
whose lines the daemon's formatter prefixes each, or (JSON) makes one object of each
with its ``queue_id`` (so a line's timestamp may be up to 0.1 s after its event).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from outrider.events.types import Bounced, Delivered, Event, MessageQueued, RecipientEvent
from outrider.runtime.logs import MAIL_LINES

log = logging.getLogger("outrider.mail")


# Lines are gathered for at most this long (or this many) and logged as one record:
# under load a batch of the bus is often a single event, and a log record costs ~15 µs
# on the delivery process, the one that paces every outbound connection.
GATHER_SECONDS = 0.1
GATHER_LINES = 500


class EventLogSubscriber:
    def __init__(self, logger: logging.Logger = log, *, gather: float = GATHER_SECONDS) -> None:
        self.log = logger
        self.gather = gather
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def flush(self) -> None:
        """Log the gathered lines now (also at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            lines, self._lines = self._lines, []
            # One record; the text formatter prefixes every line, the JSON one makes an
            # object of each (runtime/logs.py).
            self.log.info("%s", "\n".join(lines), extra={MAIL_LINES: lines})

    def handle(self, events: Sequence[Event]) -> None:
        logger = self.log
        if not logger.isEnabledFor(logging.INFO):
            return
        lines = self._lines
        for event in events:
            if isinstance(event, (Delivered, Bounced)):
                category = f" category={event.category}" if event.category else ""
                lines.append(
                    f"{event.message.queue_id}: {_outcome(event)} to=<{event.recipient}> "
                    f"relay={_relay(event)} status={event.status}{category} "
                    f"({_printable(event.diagnostic)})"
                )
            elif isinstance(event, MessageQueued):
                msg = event.message
                lines.append(
                    f"{msg.queue_id}: received from=<{msg.sender}> size={msg.size} "
                    f"nrcpt={event.recipients} vmta={event.vmta or '-'}"
                )
        if not lines:
            return
        if self.gather <= 0 or len(lines) >= GATHER_LINES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): log at once
                self.flush()
                return
            self._timer = loop.call_later(self.gather, self.flush)


def _outcome(event: RecipientEvent) -> str:
    if isinstance(event, Delivered):
        return "delivered"
    return "bounced (expired)" if isinstance(event, Bounced) and event.expired else "bounced"


def _relay(event: RecipientEvent) -> str:
    relay = _printable(event.remote_mta) or "none"
    if event.destination_ip and event.destination_ip not in relay:
        return f"{relay} [{event.destination_ip}]"
    return relay


def _printable(text: str) -> str:
    """One log line per event: a remote server's multi-line reply or control characters
    cannot start a line of their own (the check is one C call when there are none)."""
    if text.isprintable():
        return text
    text = text.replace("\r\n", "\n").replace("\n", " / ")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
