"""The small HTML pages of ``/unsubscribe/{token}`` and the one-click body check.

``GET`` never unsubscribes (link scanners and previews fetch every URL in a mail): it
shows a button whose form POSTs ``List-Unsubscribe=One-Click`` to the same URL, the
body a mailbox provider sends for RFC 8058 one-click. The form's action is the empty
URL, so it works behind any reverse proxy path. Pure: strings in, strings out.
"""

from __future__ import annotations

import html

from outrider.unsubscribe.token import Unsubscribe

# No scripts, no outside resources, forms only to ourselves, never in a frame; the URL
# holds the token, so no Referer leaves the page either.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
ONE_CLICK = ("List-Unsubscribe", "One-Click")

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32em;margin:3em auto;padding:0 1em;"
    "line-height:1.5}button{font-size:1.1em;padding:.5em 1.5em;cursor:pointer}"
)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _note(page_text: str) -> str:
    return f"<p>{html.escape(page_text)}</p>" if page_text else ""


def confirm_page(what: Unsubscribe, page_text: str = "") -> str:
    """The ``GET`` page: who unsubscribes from what, and the button."""
    sender = f" from mail sent by {html.escape(what.scope)}" if what.scope else ""
    return _page(
        "Unsubscribe",
        f"<p>Unsubscribe <strong>{html.escape(what.recipient)}</strong>{sender}?</p>"
        f"{_note(page_text)}"
        '<form method="post" action="">'
        f'<input type="hidden" name="{ONE_CLICK[0]}" value="{ONE_CLICK[1]}">'
        '<button type="submit">Unsubscribe</button></form>',
    )


def done_page(what: Unsubscribe, page_text: str = "") -> str:
    """The answer to the ``POST``."""
    sender = f" from {html.escape(what.scope)}" if what.scope else ""
    return _page(
        "Unsubscribed",
        f"<p><strong>{html.escape(what.recipient)}</strong> will get no more mail{sender}.</p>"
        f"{_note(page_text)}",
    )


def invalid_page() -> str:
    """A malformed, forged or expired token: no detail of why."""
    return _page("Invalid link", "<p>This unsubscribe link is not valid.</p>")


def error_page(message: str) -> str:
    return _page("Unsubscribe", f"<p>{html.escape(message)}</p>")


def is_one_click(fields: dict[str, str]) -> bool:
    """Whether a POST's form fields are RFC 8058's ``List-Unsubscribe=One-Click``."""
    return fields.get(ONE_CLICK[0], "").strip() == ONE_CLICK[1]
