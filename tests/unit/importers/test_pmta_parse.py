"""The PowerMTA config reader: directives, blocks, comments, includes, errors with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from outrider.importers.pmta_parse import (
    Block,
    Directive,
    PmtaSyntaxError,
    parse_file,
    parse_text,
    strip_comment,
    walk,
)


def test_directives_blocks_and_locations() -> None:
    nodes = parse_text(
        "# comment\nHost-Name mta.example.com\n\n"
        "<Domain gmail.com>\n  MAX-SMTP-OUT 10  # ten\n</domain>\n",
        "cfg",
    )
    host, domain = nodes
    assert host == Directive("host-name", "mta.example.com", host.loc, "Host-Name mta.example.com")
    assert str(host.loc) == "cfg:2"
    assert isinstance(domain, Block) and domain.tag == "domain" and domain.arg == "gmail.com"
    [child] = domain.children
    assert isinstance(child, Directive)
    assert (child.name, child.value, child.loc.line) == ("max-smtp-out", "10", 5)


def test_nested_domain_inside_virtual_mta() -> None:
    [vmta] = parse_text("<virtual-mta a>\n<domain *>\nmax-smtp-out 1\n</domain>\n</virtual-mta>\n")
    assert isinstance(vmta, Block)
    [inner] = vmta.children
    assert isinstance(inner, Block) and inner.tag == "domain"
    assert [n.loc.line for n in walk((vmta,))] == [1, 2, 3]


def test_comment_rules_keep_regex_and_quotes() -> None:
    assert strip_comment("reply /a #b/ mode=backoff # why") == "reply /a #b/ mode=backoff "
    assert strip_comment('password "x #y"  # c') == 'password "x #y"  '
    assert strip_comment("route host#1") == "route host#1"


def test_line_continuation() -> None:
    [macro] = parse_text("domain-macro m a.com,\\\n   b.com\n")
    assert isinstance(macro, Directive)
    assert macro.value == "m a.com, b.com" and macro.loc.line == 1


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("<domain a.com>\nmax-smtp-out 1\n", "cfg:1", "<domain> is never closed"),
        ("</domain>\n", "cfg:1", "</domain> without an open <domain>"),
        ("<source 0/0>\n</domain>\n", "cfg:2", "</domain> closes <source> opened at line 1"),
        ("<domain a>\n<domain b>\n</domain>\n</domain>\n", "cfg:2", "not allowed inside <domain>"),
        ("<domain a.com\n", "cfg:1", "block tag without '>'"),
        ("include missing.conf\n", "cfg:1", "cannot read"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = tmp_path / "cfg"
    path.write_text(text)
    with pytest.raises(PmtaSyntaxError) as info:
        parse_file(path)
    assert str(info.value).startswith(f"{tmp_path}/{where}: ")
    assert message in str(info.value)


def test_includes_relative_and_glob_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "20-b.conf").write_text("max-smtp-out 2\n")
    (tmp_path / "conf.d" / "10-a.conf").write_text("include ../more.conf\n")
    (tmp_path / "more.conf").write_text("<domain x.com>\nroute a.b\n</domain>\n")
    (tmp_path / "config").write_text("host-name h.example\ninclude conf.d/*.conf\n")
    nodes = parse_file(tmp_path / "config")
    assert [(n.loc.file.name, n.loc.line) for n in walk(nodes)] == [
        ("config", 1),
        ("more.conf", 1),
        ("more.conf", 2),
        ("20-b.conf", 1),
    ]


def test_include_loop_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("include b\n")
    (tmp_path / "b").write_text("\ninclude a\n")
    with pytest.raises(PmtaSyntaxError, match=r"b:2: include loop"):
        parse_file(tmp_path / "a")


def test_unknown_blocks_may_nest() -> None:
    [outer] = parse_text(
        "<bounce-processor>\n<address-list>\nx y\n</address-list>\n</bounce-processor>\n"
    )
    assert isinstance(outer, Block) and isinstance(outer.children[0], Block)
