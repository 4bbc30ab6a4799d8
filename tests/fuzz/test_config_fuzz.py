"""Fuzz the config loader: random TOML documents over the declared tables and keys, and
mutated copies of the shipped examples and the seed configs under tests/fuzz/corpus/config.

Whatever the text, ``parse_config`` either returns a usable :class:`Config` or raises
:class:`ConfigError` whose every problem is one ``FILE:LINE: key: message`` line with a
line inside the file; never any other exception. ``load_config`` adds reading the file:
any bytes (bad UTF-8, a BOM) end the same two ways.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from outrider.config.loader import Config, ConfigError, known_keys, load_config, parse_config
from tests.fuzz.harness import fuzz_target
from tests.fuzz.seeds import CONFIG_SEEDS

FILENAME = "fuzz.toml"
TABLE_KEYS = known_keys()
NAMED_TABLES = ("domain", "virtual-mta", "virtual-mta-pool", "smtp-pattern-list", "sender-domain")
PLAIN_TABLES = ("server", "dns", "relay", "auth", "mta-sts")
NAMES = [
    "*",
    "example.org",
    "Example.ORG.",
    "$gmail",
    "*.example.net",
    "",
    "a..b",
    "b\u00fccher.de",
]
NAMES += ["vmta-1", "pool-a", "default", "throttling", "x" * 300, "bad name", "xn--"]


class Raw(str):
    """A TOML literal written as is (dates and times, which Python values would not show)."""


def _plausible() -> dict[str, list[Any]]:
    """Per key, the values the seed configs give it: mutations stay near valid files."""
    found: dict[str, list[Any]] = defaultdict(list)

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, dict | list) and not (
                isinstance(value, list) and all(not isinstance(v, dict) for v in value)
            ):
                walk(value)
            if isinstance(key, str):
                found[key].append(value)

    for text in CONFIG_SEEDS:
        try:
            walk(tomllib.loads(text))
        except tomllib.TOMLDecodeError:
            continue
    return found


PLAUSIBLE = _plausible()
STRINGS = [
    "30s", "0s", "-1s", "1e999s", "1.5h", "4d12h", "250ms", "never", "90", "nan", "inf",
    "50M", "0", "1G", "99999999999999999999999M", "10/s", "0/m", "3000/m", "unlimited", "1/0s",
    "127.0.0.1:25", "[::1]:25", "0.0.0.0:0", "127.0.0.1:99999", "localhost:25", "[::1", ":25",
    "example.org", "*", "$gmail", "-bad-.example", "a" * 70 + ".test", "\u00fc.test", ".",
    "127.0.0.0/8", "::1/128", "10.0.0.1/33", "mx", "submission", "submissions", "starttls",
    "implicit", "none", "ca", "ca+hostname", "TLSv1.3", "TLSv1.0", "scrypt", "argon2id",
    "mode=backoff", "mode=normal", "disable-source-ip", "bounce", "defer", "rcpt", "data-end",
    "(", "a{4294967296}", "((((((((((((((((((((((((((((((x))))))))))))))))))))))))))))))",
    "(?i)x", "[", "\\", "192.0.2.1 mta.example.test", "192.0.2.1 a b", "/dev/null", "var/x",
    "", " ", "\x00", "\r\n", "\u2028", "hostmaster@example.org", "a@b@c", "@", "vmta-1",
]  # fmt: skip
scalars = st.one_of(
    st.sampled_from(STRINGS),
    st.text(max_size=12),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 1, -1, 25, 65535, 65536, 2**63 - 1]),
    st.floats(),
    st.booleans(),
    st.sampled_from([Raw("1979-05-27"), Raw("07:32:00"), Raw("1979-05-27T07:32:00Z")]),
)
key_names = st.one_of(
    st.sampled_from(sorted({k for keys in TABLE_KEYS.values() for k in keys})),
    st.sampled_from(["retry_after", "Hostname", "domain", "rules", "typo-key", ""]),
    st.text(max_size=8),
)
any_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key_names, inner, max_size=3),
    max_leaves=4,
)


@functools.cache
def value_for(key: str) -> st.SearchStrategy[Any]:
    seen = PLAUSIBLE.get(key)
    return any_values if not seen else st.one_of(st.sampled_from(seen), any_values)


@functools.cache
def tables(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def table(draw: st.DrawFn) -> dict[str, Any]:
        chosen = draw(st.lists(st.one_of(st.sampled_from(keys), key_names), max_size=4))
        return {key: draw(value_for(key)) for key in chosen}

    return table()


TOP_LEVEL = [*PLAIN_TABLES, *NAMED_TABLES, "listener", "domain-macro", "other"]


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A few tables, each with a few keys: valid TOML, rarely a valid config."""
    doc: dict[str, Any] = {"listener": draw(st.lists(tables(TABLE_KEYS["listener"]), max_size=2))}
    for name in draw(st.lists(st.sampled_from(TOP_LEVEL), max_size=4, unique=True)):
        if name in PLAIN_TABLES:
            doc[name] = draw(tables(TABLE_KEYS[name]))
        elif name in NAMED_TABLES:
            names = draw(st.lists(st.sampled_from(NAMES), max_size=2, unique=True))
            doc[name] = {n: draw(tables(TABLE_KEYS[name])) for n in names}
        elif name == "listener":
            doc[name].append(draw(tables(TABLE_KEYS[name])))
        elif name == "domain-macro":
            macros = st.dictionaries(st.sampled_from(NAMES), st.lists(st.sampled_from(NAMES)))
            doc[name] = draw(macros)
        else:
            doc[draw(key_names)] = draw(any_values)
    lists = doc.get("smtp-pattern-list")
    for entry in lists.values() if isinstance(lists, dict) else ():
        rules = st.lists(tables(TABLE_KEYS["smtp-pattern-list.rules"]), max_size=2)
        entry.setdefault("rules", draw(rules))
    return doc


def toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else {math.inf: "inf", -math.inf: "-inf"}.get(value, repr(value))
        )
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    pairs = (f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items())
    return "{" + ", ".join(pairs) + "}"


def toml_document(doc: dict[str, Any]) -> str:
    """TOML text: top-level values first, then one [table] or [[table]] per entry."""
    head: list[str] = []
    body: list[str] = []
    for name, value in doc.items():
        key = toml_string(name)
        if isinstance(value, dict):
            body.append(f"[{key}]")
            body += [f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for element in value:
                body.append(f"[[{key}]]")
                body += [f"{toml_string(k)} = {toml_value(v)}" for k, v in element.items()]
        else:
            head.append(f"{key} = {toml_value(value)}")
    return "\n".join(head + body) + "\n"


def check(text: str) -> Config | None:
    """Load ``text``; a refusal must be well-formed problems."""
    try:
        config = parse_config(text, FILENAME)
    except ConfigError as exc:
        check_problems(exc, text)
        return None
    config.policy_for("example.org")
    config.policy_for("mail.example.net", next(iter(config.virtual_mtas)))
    return config


def check_problems(exc: ConfigError, text: str) -> None:
    assert exc.problems
    last_line = text.count("\n") + 1
    for problem in exc.problems:
        assert problem.file == FILENAME and problem.key and problem.message
        assert 1 <= problem.line <= last_line, (problem, last_line)
        assert str(problem) == f"{FILENAME}:{problem.line}: {problem.key}: {problem.message}"
        assert "\n" not in str(problem) and "\r" not in str(problem), str(problem)
    assert [p.line for p in exc.problems] == sorted(p.line for p in exc.problems)


@given(documents())
@fuzz_target(weight=0.4)
def test_random_documents_load_or_report_problems(doc: dict[str, Any]) -> None:
    text = toml_document(doc)
    assert tomllib.loads(text) is not None  # the generator writes valid TOML
    check(text)


# --- mutated seeds ----------------------------------------------------------------------

MUTATIONS = ["delete", "duplicate", "swap", "value", "insert", "nest", "flip", "truncate"]
INSERTS = ["[server]", "[[listener]]", '[domain."x.test"]', "[domain]", "[[domain]]", "= 1"]
INSERTS += ["key = ", 'a.b.c = "d"', "listener = 1", "[server.x]", '"""', "'''", "# \u2028"]


def _value_lines(lines: list[str]) -> Iterator[int]:
    return (i for i, line in enumerate(lines) if "=" in line and not line.lstrip().startswith("#"))


@st.composite
def mutated_seeds(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(CONFIG_SEEDS))
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 4))):
        mutation = draw(st.sampled_from(MUTATIONS))
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        assignments = list(_value_lines(lines))
        if mutation == "delete" and lines:
            del lines[at]
        elif mutation == "duplicate" and lines:
            lines.insert(at, lines[at])
        elif mutation == "swap" and len(lines) > 1:
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif mutation in ("value", "nest") and assignments:
            at = draw(st.sampled_from(assignments))
            key = lines[at].split("=", 1)[0]
            value = toml_value(draw(value_for(key.strip().strip('"'))))
            if mutation == "nest":  # arrays, inline tables, or both, nested deep
                depth = draw(st.sampled_from([2, 30, 300, 3000]))
                opening, closing = draw(st.sampled_from([("[", "]"), ("{k=", "}"), ("[{k=", "}]")]))
                value = opening * depth + value + closing * depth
            lines[at] = f"{key}= {value}"
        elif mutation == "insert":
            lines.insert(at, draw(st.one_of(st.sampled_from(INSERTS), st.text(max_size=20))))
        elif mutation == "flip":
            joined = "\n".join(lines)
            pos = draw(st.integers(0, len(joined)))
            joined = joined[:pos] + draw(st.characters()) + joined[pos + 1 :]
            lines = joined.split("\n")
        elif mutation == "truncate":
            joined = "\n".join(lines)
            lines = joined[: draw(st.integers(0, len(joined)))].split("\n")
    return "\n".join(lines)


@given(mutated_seeds())
@example("[server]\nhostname = " + "[" * 3000 + '"a"' + "]" * 3000 + "\n")
@example("[[listener]]\nbanner = " + "{k=" * 330 + "1" + "}" * 330 + "\n")
@example('[[smtp-pattern-list.x.rules]]\nreply = "a{4294967296}"\naction = "bounce"\n')
@fuzz_target(weight=0.75)
def test_mutated_configs_load_or_report_problems(text: str) -> None:
    check(text)


@given(st.sampled_from(CONFIG_SEEDS), st.binary(max_size=8), st.integers(0), st.booleans())
@fuzz_target(weight=0.2)
def test_config_files_with_any_bytes_load_or_report_problems(
    seed: str, noise: bytes, at: int, bom: bool
) -> None:
    raw = seed.encode("utf-8")
    at %= len(raw) + 1
    raw = (b"\xef\xbb\xbf" if bom else b"") + raw[:at] + noise + raw[at:]
    fd, name = tempfile.mkstemp(suffix=".toml")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        load_config(Path(name))
    except ConfigError as exc:
        for problem in exc.problems:
            assert problem.file == name and problem.key and problem.message
            assert str(problem).startswith(f"{name}:{problem.line}: ")
    finally:
        os.unlink(name)
