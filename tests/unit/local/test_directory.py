"""Who receives mail for a local address."""

from __future__ import annotations

from outrider.local.directory import Directory, Kind, LocalDomain, MailingList

ORG = LocalDomain(
    "example.com",
    frozenset({"alice", "bob", "carol"}),
    {
        "postmaster": ("alice",),
        "sales": ("alice", "bob", "team"),
        "old": ("someone@Elsewhere.Example",),
        "both": ("alice", "ALICE@example.com", "bob@example.com"),
        "keep": ("keep", "archive@elsewhere.example", "bob"),
        "loop-a": ("loop-b",),
        "loop-b": ("loop-a",),
        "typo": ("nobody",),
    },
    delimiter="+",
)
DOVECOT = LocalDomain("example.net", None, {"info": ("alice@example.com",)})
CATCH = LocalDomain("example.org", frozenset({"x"}), catch_all=("alice@example.com",))
TEAM = MailingList("team@example.com", ("alice@example.com", "carol@example.com"))
DIRECTORY = Directory({d.name: d for d in (ORG, DOVECOT, CATCH)}, {TEAM.address: TEAM})


def kind(address: str) -> Kind:
    return DIRECTORY.lookup(address).kind


def test_lookup_order() -> None:
    assert kind("alice@example.com") is Kind.MAILBOX
    assert kind("Alice@EXAMPLE.com.") is Kind.MAILBOX
    assert kind("sales@example.com") is Kind.ALIAS
    assert kind("team@example.com") is Kind.LIST
    assert kind("nobody@example.com") is Kind.UNKNOWN
    assert kind("someone@elsewhere.example") is Kind.REMOTE
    assert kind("anything@example.net") is Kind.MAILBOX  # no list: the LMTP server decides
    assert kind("info@example.net") is Kind.ALIAS
    assert kind("whoever@example.org") is Kind.ALIAS  # the catch-all
    assert kind("x@example.org") is Kind.MAILBOX  # a mailbox wins over the catch-all


def test_recipient_delimiter_reaches_the_base_mailbox_or_alias() -> None:
    found = DIRECTORY.lookup("Alice+News@example.com")
    assert (found.kind, found.mailbox, found.address) == (
        Kind.MAILBOX,
        "alice",
        "alice+news@example.com",
    )
    assert kind("sales+q4@example.com") is Kind.ALIAS
    assert kind("nobody+x@example.com") is Kind.UNKNOWN
    assert kind("+x@example.com") is Kind.UNKNOWN  # no base
    assert kind("x+y@example.org") is Kind.ALIAS  # no delimiter there: the catch-all


def test_accepts_refuses_only_unknown_local_addresses() -> None:
    assert DIRECTORY.accepts("bob@example.com")
    assert not DIRECTORY.accepts("nobody@example.com")
    assert DIRECTORY.accepts("user@not-local.example")  # the relay rules decide for these


def test_expand_follows_aliases_once_each() -> None:
    result = DIRECTORY.expand("sales@example.com")
    assert [t.mailbox for t in result.mailboxes] == ["alice", "bob"]
    assert result.lists == ["team@example.com"]
    assert result.remote == [] and result.loop == ""
    both = DIRECTORY.expand("both@example.com")
    assert [t.mailbox for t in both.mailboxes] == ["alice", "bob"]
    assert DIRECTORY.expand("old@example.com").remote == ["someone@elsewhere.example"]
    assert [t.mailbox for t in DIRECTORY.expand("info@example.net").mailboxes] == ["alice"]


def test_an_alias_naming_itself_keeps_a_copy_in_its_mailbox() -> None:
    keep = LocalDomain("k.example", frozenset({"keep", "bob"}), {"keep": ("keep", "bob")})
    result = Directory({"k.example": keep}, {}).expand("keep@k.example")
    assert [t.mailbox for t in result.mailboxes] == ["keep", "bob"]
    assert result.loop == ""
    # In ORG "keep" has no mailbox: the copy is an unknown target, reported, not a loop.
    org = DIRECTORY.expand("keep@example.com")
    assert org.unknown == ["keep@example.com"]
    assert org.remote == ["archive@elsewhere.example"]


def test_cycles_and_deep_chains_are_loops() -> None:
    assert DIRECTORY.expand("loop-a@example.com").loop == "loop-a@example.com"
    chain = {f"a{i}": (f"a{i + 1}",) for i in range(30)}
    deep = LocalDomain("deep.example", frozenset({"a30"}), chain)
    assert Directory({"deep.example": deep}, {}).expand("a0@deep.example").loop
    short = {f"a{i}": (f"a{i + 1}",) for i in range(10)}
    ok = LocalDomain("ok.example", frozenset({"a10"}), short)
    result = Directory({"ok.example": ok}, {}).expand("a0@ok.example")
    assert result.loop == "" and [t.mailbox for t in result.mailboxes] == ["a10"]


def test_check_reports_loops_unknown_targets_and_members() -> None:
    bad_list = MailingList("l@example.com", ("ghost@example.com", "bob@example.com"))
    directory = Directory({ORG.name: ORG}, {TEAM.address: TEAM, bad_list.address: bad_list})
    problems = directory.check()
    assert "alias loop-a@example.com: loop at loop-a@example.com" in problems
    assert "alias typo@example.com: nobody@example.com is not a mailbox" in problems
    assert "list l@example.com: member ghost@example.com is not a mailbox" in problems
    assert not any("sales" in p for p in problems)
