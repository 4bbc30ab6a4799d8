"""From a recipient to a mailbox directory: validated names, never a path from the wire.

A path template such as ``/var/mail/{domain}/{user}/Maildir`` is filled with the
recipient domain and the mailbox name the caller gives (the final local part, after
aliases and extensions). Both come from SMTP, so each must be a single harmless path
component: no ``/``, no ``..``, no NUL or other control character, no leading dot, and
a bounded length. The result is checked once more against the template's fixed prefix,
so whatever slips past the name rules still cannot leave the mail root.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

__all__ = [
    "MAX_DOMAIN_LENGTH",
    "MAX_NAME_LENGTH",
    "BadMailbox",
    "check_template",
    "default_mailbox_name",
    "mailbox_path",
    "name_problem",
]

MAX_NAME_LENGTH = 64  # RFC 5321 4.5.3.1.1: a local part is at most 64 octets
MAX_DOMAIN_LENGTH = 255
_PLACEHOLDER = re.compile(r"\{(domain|user)\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# The mailbox name for a recipient address.
MailboxName = Callable[[str], str]


class BadMailbox(ValueError):
    """A recipient that cannot name a mailbox (a permanent failure, 5.1.3)."""


def default_mailbox_name(address: str) -> str:
    """The local part of ``address``, lower-cased (as Postfix's virtual delivery looks
    mailboxes up); aliases and recipient delimiters are the caller's business."""
    at = address.rfind("@")
    return (address[:at] if at >= 0 else address).lower()


def name_problem(name: str, max_length: int) -> str | None:
    """What makes ``name`` unfit for one path component, or None when it is fit."""
    if not name:
        return "empty"
    if len(name.encode("utf-8", "surrogateescape")) > max_length:
        return f"longer than {max_length} octets"
    if "/" in name:
        return "contains '/'"
    if _CONTROL.search(name):
        return "contains a control character"
    if name.startswith("."):
        return "starts with '.'"
    if ".." in name:
        return "contains '..'"
    return None


def check_template(template: str) -> None:
    """Raise ValueError unless ``template`` is an absolute, normal path with
    ``{user}`` in it (a mailbox per user) and no other braces."""
    if not template.startswith("/"):
        raise ValueError(f"maildir path {template!r} is not absolute")
    if "{user}" not in template:
        raise ValueError(f"maildir path {template!r} has no {{user}} placeholder")
    rest = _PLACEHOLDER.sub("", template)
    if "{" in rest or "}" in rest:
        raise ValueError(f"maildir path {template!r}: only {{domain}} and {{user}} are known")
    if _CONTROL.search(template):
        raise ValueError(f"maildir path {template!r} contains a control character")
    if os.path.normpath(template) != template.rstrip("/") or "/../" in template + "/":
        raise ValueError(f"maildir path {template!r} is not a normal path")


def mailbox_path(template: str, domain: str, user: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """The mailbox directory for ``user`` at ``domain``; raises :class:`BadMailbox`."""
    problem = name_problem(user, max_length)
    if problem is not None:
        raise BadMailbox(f"mailbox name {user!r} {problem}")
    if "{domain}" in template:
        problem = name_problem(domain, MAX_DOMAIN_LENGTH)
        if problem is not None:
            raise BadMailbox(f"domain {domain!r} {problem}")
    values = {"domain": domain, "user": user}
    path = _PLACEHOLDER.sub(lambda m: values[m[1]], template)  # one pass: no re-expansion
    prefix = template[: template.index("{")]
    if os.path.normpath(path) != path.rstrip("/") or not path.startswith(prefix):
        raise BadMailbox(f"mailbox path for {user!r} leaves {prefix!r}")
    return path.rstrip("/")
