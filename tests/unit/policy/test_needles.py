"""Literal prefilters: what every match must contain, and never a wrong skip."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from outrider.policy.bounce_category import BounceClassifier, shipped_rules
from outrider.policy.needles import needles
from tests.unit.policy.test_bounce_category import REPLIES

ICASE = re.IGNORECASE


def test_literals_runs_groups_and_alternations() -> None:
    assert needles("user unknown", ICASE) == ("user unknown",)
    assert needles(r"\bspam\b", ICASE) == ("spam",)
    assert needles("No Such User|unknown user", ICASE) == ("no such user", "unknown user")
    # a mandatory group gives its alternatives; the optional one is skipped
    assert needles("(account|mailbox) (is )?disabled", ICASE) == ("disabled",)
    assert needles("(account|mailbox|user) x", ICASE) == ("account", "mailbox", "user")
    assert needles("(spam)+house", ICASE) == ("house",)


def test_a_group_repeated_at_least_once_is_required() -> None:
    # "+" and "{2,}" keep their group mandatory; "*" and "?" do not
    assert needles("(mailbox)+ x", ICASE) == ("mailbox",)
    assert needles("(?:mailbox){2,5} x", ICASE) == ("mailbox",)
    assert needles("(?:mailbox)+? x", ICASE) == ("mailbox",)
    assert needles("(mailbox)* xyz", ICASE) == (" xyz",)


def test_equally_selective_requirements_prefer_fewer_needles() -> None:
    # one substring search beats two when the shortest needle is as long
    assert needles("(abcd|efgh)wxyz", ICASE) == ("wxyz",)
    assert needles("wxyz(abcd|efgh)", ICASE) == ("wxyz",)


def test_needles_are_ascii_so_u0080_breaks_a_run() -> None:
    # str.lower() and re's case folding agree on ASCII only
    assert needles("abc\x80defg", ICASE) == ("defg",)
    assert needles("abcd\u0080efg", ICASE) == ("abcd",)


def test_the_pattern_is_read_with_its_flags() -> None:
    # in verbose mode, blanks and comments are not part of any match
    assert needles("user \\ unknown  # a comment", ICASE | re.VERBOSE) == ("user unknown",)
    assert needles("user unknown # a comment", ICASE | re.VERBOSE) == ("userunknown",)


def test_no_needles_when_some_path_has_no_literal() -> None:
    assert needles(r"\d+ blocked|x", ICASE) is None  # "x" is too short to filter
    assert needles(r"\S+@\S+", ICASE) is None
    assert needles("(abc)?", ICASE) is None
    assert needles("caf\u00e9s", ICASE) == ("caf",)  # non-ASCII breaks a run
    assert needles("(", ICASE) is None  # not a pattern


TEXT = st.text(
    alphabet=st.sampled_from(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .-:<>@[]()#"
    ),
    max_size=60,
)
FRAGMENTS = st.sampled_from([text for _, text, _ in REPLIES])


@given(st.lists(st.one_of(TEXT, FRAGMENTS), max_size=4))
def test_the_prefilter_never_changes_the_answer(parts: list[str]) -> None:
    text = " ".join(parts)
    classifier = BounceClassifier(shipped_rules())
    naive = next((r for r in shipped_rules() if r.regex.search(text)), None)
    assert classifier.rule_for(text) is naive


def test_non_ascii_text_runs_every_rule() -> None:
    classifier = BounceClassifier(shipped_rules())
    assert (
        classifier.classify("5.0.0", "550 Benutzer unbekannt \u00fc user unknown") == "bad-mailbox"
    )
