"""Unsubscribe by mail: a List-Unsubscribe ``mailto:`` link's ``Subject: unsubscribe:TOKEN``.

The one-click helper's ``outrider.unsubscribe.apply.apply_unsubscribe`` is used when it
exists (the HTTP POST and this path then share one function); until then this module's
fallback does the same: verify the token, add the recipient to its scope's list with
reason ``unsubscribe``, publish :class:`~outrider.events.types.Feedback` ``unsubscribed``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from outrider.events.types import Event, Feedback
from outrider.suppression.store import SuppressionStore
from outrider.unsubscribe.token import Unsubscribe, read_token

Publish = Callable[[Event], None]


def _shared() -> Callable[..., Unsubscribe] | None:
    try:
        module: Any = importlib.import_module("outrider.unsubscribe.apply")
    except ImportError:
        return None
    found = getattr(module, "apply_unsubscribe", None)
    return found if callable(found) else None


def unsubscribe_by_mail(
    token: str,
    *,
    secret: bytes,
    store: SuppressionStore,
    publish: Publish,
    now: float,
    source: str = "mailto",
) -> Unsubscribe:
    """Apply one unsubscribe request; raises :class:`~outrider.unsubscribe.token.TokenError`."""
    shared = _shared()
    if shared is not None:
        return shared(token, secret=secret, store=store, publish=publish, now=now, source=source)
    what = read_token(secret, token, now=now)
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
