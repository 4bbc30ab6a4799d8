"""``outrider route`` for local addresses, as a table."""

from __future__ import annotations

from outrider.admin.tables import route


def test_a_local_alias_and_an_unknown_address() -> None:
    alias = {
        "address": "sales@corp.test",
        "delivery": "local",
        "local": {
            "kind": "alias",
            "address": "sales@corp.test",
            "mailboxes": ["alice@corp.test"],
            "forwarded": ["far@example.org"],
            "lists": [],
            "loop": None,
            "transport": "maildir",
        },
    }
    assert route(alias).splitlines() == [
        "address: sales@corp.test",
        "local: alias sales@corp.test",
        "transport: maildir",
        "mailboxes: alice@corp.test",
        "forwarded to: far@example.org",
    ]
    unknown = {
        "address": "x@corp.test",
        "delivery": "local",
        "local": {"kind": "unknown", "address": "x@corp.test", "refused": "550 5.1.1 at RCPT"},
    }
    assert route(unknown).endswith("refused: 550 5.1.1 at RCPT")
