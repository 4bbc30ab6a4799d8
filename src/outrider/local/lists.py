"""A mailing list post: who gets a copy, what the copy says about its list, where bounces go.

Each post is sent on as a new message from the list's bounce address (members' bounces
come back to the list, never to the poster), carrying RFC 2369 and RFC 2919 fields:
``List-Id``, ``List-Post`` and ``List-Unsubscribe``. Nested lists are flattened when the
post is expanded, once, each member once; a list that contains itself (directly or not)
contributes its members once and no loop. A post that already carries this list's
``List-Id`` came back around a loop and is refused (5.4.6).
"""

from __future__ import annotations

from outrider.local.directory import Directory, Kind, MailingList, split_address
from outrider.message.headers import extract_and_remove_header, header_value

# The fields this list sets; copies of them in the post (another list's) are replaced.
LIST_FIELDS = ("List-Id", "List-Post", "List-Unsubscribe", "List-Unsubscribe-Post")


def list_id(mlist: MailingList) -> str:
    """``description <team.example.com>``: RFC 2919's id is the address with ``.`` for ``@``."""
    local, domain = split_address(mlist.address)
    ident = f"<{local}.{domain}>"
    return f"{mlist.description} {ident}" if mlist.description else ident


def bounce_address(mlist: MailingList) -> str:
    if mlist.bounce_address:
        return mlist.bounce_address
    local, domain = split_address(mlist.address)
    return f"{local}-bounces@{domain}"


def request_address(mlist: MailingList) -> str:
    local, domain = split_address(mlist.address)
    return f"{local}-request@{domain}"


def has_looped(content: bytes, mlist: MailingList) -> bool:
    """The post carries this list's own List-Id: it went out from here and came back."""
    value = header_value(content, "List-Id")
    return value is not None and f"<{_ident(mlist)}>" in value.lower()


def _ident(mlist: MailingList) -> str:
    local, domain = split_address(mlist.address)
    return f"{local}.{domain}".lower()


def list_copy(content: bytes, mlist: MailingList) -> bytes:
    """The post as the members get it: the list's fields first, other lists' removed."""
    for name in LIST_FIELDS:
        content, _ = extract_and_remove_header(content, name)
    fields = (
        f"List-Id: {list_id(mlist)}\r\n"
        f"List-Post: <mailto:{mlist.address}>\r\n"
        f"List-Unsubscribe: <mailto:{request_address(mlist)}?subject=unsubscribe>\r\n"
    )
    return fields.encode("utf-8") + content


def members_of(directory: Directory, address: str) -> tuple[str, ...]:
    """Every address a post to ``address`` reaches: nested lists flattened, each once."""
    out: dict[str, None] = {}
    visited: set[str] = set()
    stack = [address]
    while stack:
        current = stack.pop(0)
        if current in visited:
            continue
        visited.add(current)
        mlist = directory.lists.get(current)
        if mlist is None:
            continue
        for member in mlist.members:
            local, domain = split_address(member)
            key = f"{local.lower()}@{domain}" if directory.is_local(domain) else member
            if directory.lookup(key).kind is Kind.LIST:
                stack.append(directory.lookup(key).address)
            else:
                out.setdefault(key, None)
    return tuple(out)
