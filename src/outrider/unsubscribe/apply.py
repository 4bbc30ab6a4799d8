"""Carry out an unsubscribe: verify the token, suppress, tell the subscribers.

The one function both ways in use: the HTTP one-click ``POST /unsubscribe/{token}``
(:mod:`outrider.http.server`) and a mail to the ``[unsubscribe] mailto`` address whose
Subject is ``unsubscribe:TOKEN`` (the bounce-domain consumer, :mod:`outrider.feedback`).
Idempotent: unsubscribing twice replaces the entry and publishes a second event, which
webhook receivers should treat as the same fact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from outrider.events.types import Event, Feedback
from outrider.suppression.store import Entry
from outrider.unsubscribe.token import TokenError, Unsubscribe, read_token

__all__ = ["TokenError", "apply_unsubscribe"]


class SuppressionAdder(Protocol):
    """The part of :class:`outrider.suppression.store.SuppressionStore` used here."""

    def add(
        self, address: str, scope: str | None = None, reason: str = "manual", source: str = ""
    ) -> Entry: ...


def apply_unsubscribe(
    token: str,
    *,
    secret: bytes,
    store: SuppressionAdder,
    publish: Callable[[Event], None],
    now: float,
    source: str,
    max_age: float | None = None,
) -> Unsubscribe:
    """Suppress the token's recipient for its scope (reason ``unsubscribe``) and publish
    ``Feedback(kind="unsubscribed")``. Raises :class:`TokenError` for a malformed, forged
    or expired token (nothing changes then), and the store's
    :class:`~outrider.suppression.store.SuppressionError` or :class:`sqlite3.Error` when
    the entry cannot be written (nothing is published then). ``source`` is recorded
    with the entry and as the event's detail: ``"one-click"``, ``"mailto"``."""
    what = read_token(secret, token, now=now, max_age=max_age)
    store.add(what.recipient, what.scope or None, "unsubscribe", source)
    publish(
        Feedback(
            at=now,
            kind="unsubscribed",
            recipient=what.recipient,
            sender_domain=what.scope,
            job_id=what.job_id,
            detail=source,
        )
    )
    return what
