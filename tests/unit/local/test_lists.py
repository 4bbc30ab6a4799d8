"""Mailing list posts: copies, headers, nested lists, bounce and request addresses."""

from __future__ import annotations

from outrider.local.directory import Directory, Kind, LocalDomain, MailingList
from outrider.local.lists import (
    bounce_address,
    has_looped,
    list_copy,
    list_id,
    members_of,
    request_address,
)
from outrider.message.headers import count_fields, header_value

ORG = LocalDomain("example.com", frozenset({"alice", "bob", "carol"}), {"sales": ("bob",)})
TEAM = MailingList(
    "team@example.com",
    ("alice@example.com", "all@example.com", "Out@Elsewhere.example", "ALICE@example.com"),
    description="The team",
    owner=("alice@example.com",),
)
ALL = MailingList(
    "all@example.com",
    ("team@example.com", "carol@example.com", "sales@example.com"),
    bounce_address="owner-all@example.com",
    owner=("bob@example.com",),
)
DIRECTORY = Directory({"example.com": ORG}, {m.address: m for m in (TEAM, ALL)})
POST = (
    b"From: poster@example.com\r\n"
    b"List-Id: Other list <other.elsewhere.example>\r\n"
    b"List-Unsubscribe: <mailto:x@elsewhere.example>\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"List-Id: in the body stays\r\n"
)


def test_ids_and_addresses() -> None:
    assert list_id(TEAM) == "The team <team.example.com>"
    assert list_id(ALL) == "<all.example.com>"
    assert bounce_address(TEAM) == "team-bounces@example.com"
    assert bounce_address(ALL) == "owner-all@example.com"
    assert request_address(TEAM) == "team-request@example.com"


def test_the_copy_carries_this_lists_fields_only() -> None:
    copy = list_copy(POST, TEAM)
    assert header_value(copy, "List-Id") == "The team <team.example.com>"
    assert header_value(copy, "List-Post") == "<mailto:team@example.com>"
    assert header_value(copy, "List-Unsubscribe") == (
        "<mailto:team-request@example.com?subject=unsubscribe>"
    )
    assert count_fields(copy, "List-Id") == 1
    assert b"\r\nSubject: hello\r\n\r\nList-Id: in the body stays\r\n" in copy


def test_a_post_that_came_back_is_recognised() -> None:
    assert not has_looped(POST, TEAM)
    assert has_looped(list_copy(POST, TEAM), TEAM)
    assert not has_looped(list_copy(POST, ALL), TEAM)


def test_nested_lists_are_flattened_once_each() -> None:
    assert members_of(DIRECTORY, "team@example.com") == (
        "alice@example.com",
        "Out@Elsewhere.example",  # a remote member is kept as written
        "carol@example.com",
        "sales@example.com",
    )
    assert members_of(DIRECTORY, "all@example.com") == (
        "carol@example.com",
        "sales@example.com",
        "alice@example.com",
        "Out@Elsewhere.example",
    )


def test_bounce_and_request_addresses_reach_the_owner() -> None:
    for address, owner in [
        ("team-bounces@example.com", "alice@example.com"),
        ("team-request@example.com", "alice@example.com"),
        ("owner-all@example.com", "bob@example.com"),
        ("all-request@example.com", "bob@example.com"),
    ]:
        found = DIRECTORY.lookup(address)
        assert (found.kind, found.targets) == (Kind.ALIAS, (owner,)), address
    assert DIRECTORY.lookup("all-bounces@example.com").kind is Kind.UNKNOWN  # it has its own
