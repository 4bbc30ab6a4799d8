"""KeyLocator: key path -> line, and key path rendering."""

from __future__ import annotations

import tomllib

import pytest

from outrider.config.loader import KeyLocator, format_key_path

DOC = """\
# comment [not.a.table]
top = 1

[server]
hostname = "mta.example.test"   # trailing comment
"spool-dir" = 'var/spool'

[[listener]]
address = "127.0.0.1:2525"

[[listener]]
address = "127.0.0.1:2526"
relay-networks = [
  "127.0.0.0/8",   # loopback
  # a comment line between elements
  "::1/128",
]

[domain."*"]
retry-after = ["5m", "10m"]

[domain."example.net"]
route = "127.0.0.2:2600"

[ domain . 'literal.example' ]
route = "x"

[domain."esc\\u0061ped.example"]
route = "y"
"""


@pytest.fixture(scope="module")
def doc() -> KeyLocator:
    tomllib.loads(DOC)  # the locator is only meant for valid TOML
    return KeyLocator(DOC)


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("top",), 2),
        (("server",), 4),
        (("server", "hostname"), 5),
        (("server", "spool-dir"), 6),
        (("listener",), 8),
        (("listener", 0), 8),
        (("listener", 0, "address"), 9),
        (("listener", 1), 11),
        (("listener", 1, "address"), 12),
        (("listener", 1, "relay-networks"), 13),
        (("listener", 1, "relay-networks", 0), 14),
        (("listener", 1, "relay-networks", 1), 16),
        (("domain",), 19),
        (("domain", "*"), 19),
        (("domain", "*", "retry-after"), 20),
        (("domain", "*", "retry-after", 1), 20),
        (("domain", "example.net"), 22),
        (("domain", "example.net", "route"), 23),
        (("domain", "literal.example", "route"), 26),
        (("domain", "escaped.example", "route"), 29),
    ],
)
def test_exact_lines(doc: KeyLocator, path: tuple[str | int, ...], line: int) -> None:
    assert doc.line_of(path) == line


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("server", "missing"), 4),  # falls back to the table header
        (("listener", 1, "max-errors"), 11),
        (("domain", "example.net", "route", 3), 23),
        (("domain", "nowhere.example"), 19),
        (("nothing",), 1),
        ((), 1),
    ],
)
def test_fallbacks(doc: KeyLocator, path: tuple[str | int, ...], line: int) -> None:
    assert doc.line_of(path) == line


def test_inline_tables_and_arrays_of_inline_tables() -> None:
    text = """\
server = { hostname = "a.example", "log-dir" = "x" }
listener = [
  { address = "127.0.0.1:25" },
  { address = "127.0.0.1:26",
    relay-networks = ["10.0.0.0/8", "192.0.2.1"] },
]
domain = { "*" = { route = "r.example" }, "b.example" = { max-smtp-out = 3 } }
"""
    # tomllib (TOML 1.0) rejects newlines in inline tables; the locator tolerates them.
    loc = KeyLocator(text)
    assert loc.line_of(("server", "hostname")) == 1
    assert loc.line_of(("server", "log-dir")) == 1
    assert loc.line_of(("listener",)) == 2
    assert loc.line_of(("listener", 0, "address")) == 3
    assert loc.line_of(("listener", 1)) == 4
    assert loc.line_of(("listener", 1, "relay-networks", 1)) == 5
    assert loc.line_of(("domain", "*", "route")) == 7
    assert loc.line_of(("domain", "b.example", "max-smtp-out")) == 7


def test_dotted_keys() -> None:
    text = """\
[domain]
"*".retry-after = ["1m"]
"x.example" . route = "r"
server.hostname = "h"
"""
    tomllib.loads(text)
    loc = KeyLocator(text)
    assert loc.line_of(("domain", "*")) == 2
    assert loc.line_of(("domain", "*", "retry-after", 0)) == 2
    assert loc.line_of(("domain", "x.example")) == 3
    assert loc.line_of(("domain", "x.example", "route")) == 3
    assert loc.line_of(("domain", "server", "hostname")) == 4


def test_strings_that_look_like_structure_are_skipped() -> None:
    text = '''\
[server]
banner = "a [fake] = \\" # not a comment"
note = """
[fake.table]
key = "x" \\"""
"""
literal = \'\'\'
[[listener]]
\'\'\'
hostname = 'h#x'

[[listener]]
address = "127.0.0.1:25"
'''
    tomllib.loads(text)
    loc = KeyLocator(text)
    assert loc.line_of(("server", "banner")) == 2
    assert loc.line_of(("server", "note")) == 3
    assert loc.line_of(("server", "literal")) == 7
    assert loc.line_of(("server", "hostname")) == 10
    assert loc.line_of(("listener", 0, "address")) == 13
    assert ("fake",) not in loc.lines
    assert ("listener", 1) not in loc.lines


def test_nested_arrays_of_tables_count_per_parent() -> None:
    text = """\
[[a]]
[[a.b]]
x = 1
[[a.b]]
x = 2
[[a]]
[[a.b]]
x = 3
[a.c]
y = 4
"""
    tomllib.loads(text)
    loc = KeyLocator(text)
    assert loc.line_of(("a", 0, "b", 0, "x")) == 3
    assert loc.line_of(("a", 0, "b", 1, "x")) == 5
    assert loc.line_of(("a", 1)) == 6
    assert loc.line_of(("a", 1, "b", 0, "x")) == 8
    assert loc.line_of(("a", 1, "c", "y")) == 10


def test_crlf_and_nested_arrays() -> None:
    text = "x = [\r\n  [1, 2],\r\n  [\r\n    3,\r\n  ],\r\n]\r\ny = 1\r\n"
    tomllib.loads(text)
    loc = KeyLocator(text)
    assert loc.line_of(("x", 0)) == 2
    assert loc.line_of(("x", 0, 1)) == 2
    assert loc.line_of(("x", 1)) == 3
    assert loc.line_of(("x", 1, 0)) == 4
    assert loc.line_of(("y",)) == 7


def test_scalars_including_datetimes() -> None:
    text = "a = 1979-05-27 07:32:00Z # c\nb = true\nc = -1.5e3\nd = [1979-05-27, 0x1F]\ne = 1\n"
    tomllib.loads(text)
    loc = KeyLocator(text)
    assert [loc.line_of((k,)) for k in "abcde"] == [1, 2, 3, 4, 5]
    assert loc.line_of(("d", 1)) == 4


def test_garbage_does_not_raise() -> None:
    loc = KeyLocator('a = 1\nb = "unterminated\n[c')
    assert loc.line_of(("a",)) == 1
    assert loc.line_of(("c",)) == 1


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (("server", "hostname"), "server.hostname"),
        (("domain", "example.net", "route"), 'domain."example.net".route'),
        (("domain", "*", "retry-after", 2), 'domain."*".retry-after[2]'),
        (("listener", 1, "address"), "listener[1].address"),
        (("listener",), "listener"),
        (("a b",), '"a b"'),
        (('q"x',), '"q\\"x"'),
    ],
)
def test_format_key_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_key_path(path) == text
