"""The bounce domains' VERP keys, read (made on first use) from their ``secret-file``."""

from __future__ import annotations

import logging

from outrider.config.model import Config
from outrider.local.srs import load_secret

log = logging.getLogger("outrider.feedback")


def verp_secrets(config: Config, *, only_verp: bool = False) -> dict[str, bytes]:
    """Bounce domain -> key. ``only_verp``: just the domains with ``verp = true`` (the
    intake's rewriting); the consumer reads every domain's, so bounces to tokens made
    before ``verp`` was turned off are still attributed. A key that cannot be read is
    logged and its domain left out (no rewriting, no attribution)."""
    out: dict[str, bytes] = {}
    for domain, settings in config.bounce_domains.items():
        if only_verp and not settings.verp:
            continue
        try:
            out[domain] = load_secret(settings.secret_file, "VERP secret")
        except (OSError, ValueError) as exc:
            log.error('[bounce-domain."%s"] secret-file %s: %s', domain, settings.secret_file, exc)
    return out


def unsubscribe_secret(config: Config) -> bytes | None:
    """The unsubscribe tokens' key when ``[unsubscribe]`` is configured (with a mailto
    address or URL), else None: mailto unsubscribes are then ignored."""
    settings = config.unsubscribe
    path = settings.secret_file
    if not (settings.mailto or settings.url):
        return None
    try:
        return load_secret(path, "unsubscribe secret")
    except (OSError, ValueError) as exc:
        log.error("[unsubscribe] secret-file %s: %s", path, exc)
        return None
