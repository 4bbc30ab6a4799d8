"""Control replies as HTTP answers (pure): ``{"ok": true, ...}`` is a 200 with the rest;
``{"ok": false, "error": ...}`` is a 404 when it says something does not exist, else a 400
naming the field the message quotes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# The control verbs' "does not exist" answers (src/outrider/queue/console_verbs.py, control.py).
NOT_FOUND = re.compile(
    r"^(no queued |no held message|no delivery queue matches|no virtual MTA sends from"
    r"|queue .* is not paused|job .* is not paused|source .* is not disabled)"
)
QUOTED_FIELD = re.compile(r"'([a-z_]+)'")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]


def error_body(message: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return body


def answer(reply: dict[str, Any], *, cmd: str = "", default_field: str | None = None) -> Answer:
    """A refused reload is a 409 (the file on disk conflicts with a valid config); a 400
    names the quoted field, else ``default_field`` (an operation's only parameter)."""
    if reply.get("ok"):
        return Answer(200, {k: v for k, v in reply.items() if k != "ok"})
    message = str(reply.get("error", "command failed"))
    if cmd == "reload":
        return Answer(409, error_body(message))
    if message.startswith("command failed"):
        return Answer(500, error_body(message))
    if NOT_FOUND.match(message):
        return Answer(404, error_body(message))
    found = QUOTED_FIELD.search(message)
    return Answer(400, error_body(message, found.group(1) if found else default_field))
