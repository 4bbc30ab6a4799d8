"""The web monitor's files (``src/outrider/http/static/``): safe look-up and content types."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).with_name("static")
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".woff2": "font/woff2",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
}

# The monitor uses no inline script or style and loads nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def resolve(name: str, root: Path = STATIC_DIR) -> Path | None:
    """The file for ``/static/<name>`` (``index.html`` for ``/``), or None: no dot files, no
    path outside ``root``, only known types."""
    if not name or "\\" in name or "\x00" in name:
        return None
    parts = name.split("/")
    if any(not p or p.startswith(".") for p in parts):
        return None
    path = (root / name).resolve()
    try:
        path.relative_to(root.resolve())
    except ValueError:
        return None
    if path.suffix not in TYPES or not path.is_file():
        return None
    return path


def content_type(path: Path) -> str:
    return TYPES[path.suffix]
