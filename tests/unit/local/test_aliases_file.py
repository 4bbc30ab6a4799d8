"""The aliases file format."""

from __future__ import annotations

from pathlib import Path

import pytest

from outrider.local.aliases_file import AliasError, parse_aliases, read_aliases


def test_names_targets_comments_and_continuations() -> None:
    text = (
        "# staff\n"
        "Postmaster: alice\n"
        "\n"
        "sales: alice, bob,\n"
        "   carol@elsewhere.example,\n"
        "\tdave\n"
        "old:someone@elsewhere.example  # trailing text is part of no target\n"
    )
    with pytest.raises(AliasError) as info:
        parse_aliases(text, "aliases")
    assert info.value.line == 7  # '#' is only a comment at the start of a line
    entries = parse_aliases(text.replace("  # trailing text is part of no target", ""))
    assert entries == {
        "postmaster": ("alice",),
        "sales": ("alice", "bob", "carol@elsewhere.example", "dave"),
        "old": ("someone@elsewhere.example",),
    }


def test_duplicate_targets_are_kept_once_in_order() -> None:
    assert parse_aliases("a: x, y, x\n") == {"a": ("x", "y")}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a: |/usr/bin/evil\n", 1, "commands"),
        ("a: /var/mail/x\n", 1, "commands"),
        ("a: :include:/etc/list\n", 1, ":include:"),
        ("ok: b\nno colon here\n", 2, "expected 'name: target"),
        ("a: \n", 1, "no target"),
        ("a: b\nA: c\n", 2, "defined twice"),
        ("a b: c\n", 1, "not a local part"),
        ("a: ../../etc\n", 1, "not a local part or an address"),
        ("a: b c\n", 1, "not a local part or an address"),
        (f"a: {'x' * 65}\n", 1, "longer than 64"),
    ],
)
def test_mistakes_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(AliasError) as info:
        parse_aliases(text, "/etc/outrider/aliases")
    assert info.value.line == line
    assert words in info.value.message
    assert str(info.value).startswith(f"/etc/outrider/aliases:{line}: ")


def test_read_aliases_reports_unreadable_files(tmp_path: Path) -> None:
    good = tmp_path / "aliases"
    good.write_text("a: b\n")
    assert read_aliases(good) == {"a": ("b",)}
    with pytest.raises(AliasError, match="cannot read"):
        read_aliases(tmp_path / "missing")
    bad = tmp_path / "latin1"
    bad.write_bytes(b"a: caf\xe9\n")
    with pytest.raises(AliasError, match="not UTF-8"):
        read_aliases(bad)
