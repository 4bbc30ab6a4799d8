"""Bounce categories: which of PowerMTA's categories a bounce or deferral falls in.

A pure decision from the reply a recipient got. The order is fixed so the outcome is
predictable: a recipient that expired is ``message-expired``; otherwise the reply-text
rules are asked in order and the first that matches wins (the administrator's rules
file first, then the rules shipped in ``bounce_rules.txt``, which know the usual texts
of the big mailbox providers); otherwise the enhanced status code decides (RFC 3463,
RFC 5248); otherwise ``other``.

Text comes first because the providers' enhanced codes are coarse: a ``5.7.1`` may be
a blocklist, an SPF failure or a relay refusal, and only the text tells them apart.

Replies repeat (every recipient queued for a dead host defers with the same text), so
:class:`BounceClassifier` keeps a bounded cache of ``(status, text) -> category``. Many
do not (Gmail appends a unique id): for those, each rule's regex runs only when one of
its literal needles (:mod:`~outrider.policy.needles`) is in the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from outrider.policy.needles import needles

__all__ = [
    "CATEGORIES",
    "MESSAGE_EXPIRED",
    "OTHER",
    "SUPPRESSED",
    "BounceClassifier",
    "Rule",
    "RulesFileError",
    "classify",
    "default_classifier",
    "parse_rules",
    "read_rules",
    "shipped_rules",
    "status_category",
]

OTHER = "other"
MESSAGE_EXPIRED = "message-expired"
SUPPRESSED = "suppressed"  # the suppression list: the recipient was not attempted
# PowerMTA's names, then ours; the set is closed, so metrics labels stay bounded.
CATEGORIES: tuple[str, ...] = (
    "bad-mailbox",
    "bad-domain",
    "inactive-mailbox",
    "quota-issues",
    "spam-related",
    "policy-related",
    "content-related",
    "virus-related",
    "routing-errors",
    "protocol-errors",
    "bad-connection",
    "no-answer-from-host",
    MESSAGE_EXPIRED,
    "invalid-sender",
    "relaying-issues",
    "bad-configuration",
    OTHER,
    SUPPRESSED,
)
_KNOWN = frozenset(CATEGORIES)
SHIPPED_RULES = "bounce_rules.txt"
CACHE_SIZE = 4096  # distinct (status, text) pairs remembered; the oldest go first

# "subject.detail" -> category, for both classes (4 and 5) unless _BY_CLASS says otherwise.
_BY_DETAIL: dict[str, str] = {
    "0.0": OTHER,
    "1.0": OTHER,
    "1.1": "bad-mailbox",  # bad destination mailbox address
    "1.2": "bad-domain",  # bad destination system address
    "1.3": "bad-mailbox",  # bad destination mailbox address syntax
    "1.4": "bad-mailbox",  # destination mailbox address ambiguous
    "1.6": "bad-mailbox",  # destination mailbox has moved, no forwarding address
    "1.7": "invalid-sender",  # bad sender's mailbox address syntax
    "1.8": "invalid-sender",  # bad sender's system address
    # RFC 7505 says null MX, but Microsoft uses it for "recipient not found": our own
    # null-MX text is caught by a shipped rule (bad-domain) before this.
    "1.10": "bad-mailbox",
    "2.0": OTHER,
    "2.1": "inactive-mailbox",  # mailbox disabled, not accepting messages
    "2.2": "quota-issues",  # mailbox full
    "2.3": "content-related",  # message length exceeds administrative limit
    "2.4": OTHER,  # mailing list expansion problem
    "3.0": OTHER,
    "3.1": "quota-issues",  # mail system full
    "3.2": "no-answer-from-host",  # system not accepting network messages
    "3.3": "protocol-errors",  # system not capable of selected features
    "3.4": "content-related",  # message too big for system
    "3.5": "bad-configuration",  # system incorrectly configured
    "4.0": "routing-errors",
    "4.1": "no-answer-from-host",  # no answer from host
    "4.2": "bad-connection",  # bad connection
    "4.3": "routing-errors",  # directory server (DNS) failure
    "4.4": "routing-errors",  # unable to route (5.4.4: see _BY_CLASS)
    "4.5": "bad-connection",  # mail system congestion
    "4.6": "routing-errors",  # routing loop detected
    "4.7": MESSAGE_EXPIRED,  # delivery time expired
    "6.0": "content-related",
    "7.0": "policy-related",
    "7.1": "policy-related",  # delivery not authorized, message refused
    "7.7": "content-related",  # message integrity failure
    "7.8": "bad-configuration",  # authentication credentials invalid
    "7.9": "bad-configuration",  # authentication mechanism too weak
    "7.12": "bad-configuration",  # password transition needed
    "7.13": "bad-configuration",  # (our) user account disabled
    "7.17": "bad-mailbox",  # mailbox owner has changed (RFC 7293)
    "7.18": "bad-domain",  # domain owner has changed
    "7.19": OTHER,  # RRVS test cannot be completed
    "7.26": "policy-related",  # multiple authentication checks failed (DMARC)
    "7.27": "invalid-sender",  # sender address has null MX
    "7.28": "spam-related",  # mail flood detected
}
_BY_CLASS: dict[str, str] = {
    "5.4.4": "bad-domain",  # permanently unroutable: the domain has no mail server
}
# The subject alone, when the detail is not one above.
_BY_SUBJECT: dict[str, str] = {
    "4": "routing-errors",
    "5": "protocol-errors",
    "6": "content-related",
    "7": "policy-related",
}
_FLAGS = re.IGNORECASE
_RULE_LINE = re.compile(r"^/(?P<regex>.+)/\s+(?P<category>\S+)$")


def status_category(status: str) -> str:
    """The category an enhanced status code alone says (``other`` when it says nothing)."""
    found = _BY_CLASS.get(status)
    if found is not None:
        return found
    _, _, rest = status.partition(".")
    found = _BY_DETAIL.get(rest)
    if found is not None:
        return found
    return _BY_SUBJECT.get(rest.partition(".")[0], OTHER)


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``/regex/ category`` line, kept with where it came from (for the docs and logs)."""

    regex: re.Pattern[str]
    category: str
    origin: str  # "FILE:LINE"

    @property
    def needles(self) -> tuple[str, ...] | None:
        """Lower-case strings one of which every match contains (None: unknown)."""
        return needles(self.regex.pattern, self.regex.flags)


@dataclass
class RulesFileError(Exception):
    """Mistakes in a rules file, each with its line number, so one edit fixes them all."""

    file: str
    problems: list[tuple[int, str]]

    def __str__(self) -> str:
        return "\n".join(f"{self.file}:{line}: {message}" for line, message in self.problems)


def parse_rules(text: str, filename: str) -> tuple[Rule, ...]:
    """The rules of one file: one ``/regex/ category`` per line, case-insensitive; blank
    lines and ``#`` comments are skipped. Raises :class:`RulesFileError` naming every bad
    line (not a ``/regex/ category`` line, a regex that does not compile, an unknown
    category)."""
    rules: list[Rule] = []
    problems: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _RULE_LINE.match(line)
        if match is None:
            problems.append((number, "expected '/regex/ category'"))
            continue
        category = match["category"]
        if category not in _KNOWN:
            known = ", ".join(CATEGORIES)
            problems.append((number, f"unknown category {category!r} (known: {known})"))
            continue
        try:
            regex = re.compile(match["regex"], _FLAGS)
        except re.error as exc:
            problems.append((number, f"bad regular expression: {exc}"))
            continue
        rules.append(Rule(regex, category, f"{filename}:{number}"))
    if problems:
        raise RulesFileError(filename, problems)
    return tuple(rules)


def read_rules(path: Path) -> tuple[Rule, ...]:
    """An administrator's rules file; OSError or :class:`RulesFileError` when unusable
    (text that is not UTF-8 is reported at the line of its first bad byte)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RulesFileError(str(path), [(line, f"not UTF-8 text: {exc.reason}")]) from None
    return parse_rules(text, str(path))


@cache
def shipped_rules() -> tuple[Rule, ...]:
    """The rules shipped with Outrider (package data), parsed once per process."""
    text = resources.files("outrider.policy").joinpath(SHIPPED_RULES).read_text("utf-8")
    return parse_rules(text, SHIPPED_RULES)


class BounceClassifier:
    """Compiled rules and the cache in front of them; build a new one when the rules change."""

    __slots__ = ("_cache", "_cache_size", "_filtered", "rules")

    def __init__(self, rules: Iterable[Rule], *, cache_size: int = CACHE_SIZE) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        # (needles or (), rule): an empty tuple means "always run the regex".
        self._filtered = tuple((rule.needles or (), rule) for rule in self.rules)
        self._cache: dict[tuple[str, str], str] = {}
        self._cache_size = cache_size

    @classmethod
    def with_extra(cls, extra: Sequence[Rule] = ()) -> BounceClassifier:
        """The administrator's rules (asked first), then the shipped ones."""
        return cls((*extra, *shipped_rules()))

    @classmethod
    def from_file(cls, path: Path | None) -> BounceClassifier:
        """From ``[bounce-categories] rules-file`` (None: the shipped rules only)."""
        return cls.with_extra(read_rules(path) if path is not None else ())

    def classify(self, status: str, diagnostic: str, *, expired: bool = False) -> str:
        if expired:
            return MESSAGE_EXPIRED
        key = (status, diagnostic)
        found = self._cache.get(key)
        if found is None:
            found = self._decide(status, diagnostic)
            cache_ = self._cache
            if len(cache_) >= self._cache_size:
                del cache_[next(iter(cache_))]
            cache_[key] = found
        return found

    def rule_for(self, diagnostic: str) -> Rule | None:
        """The first rule matching ``diagnostic`` (for ``why`` questions and tests)."""
        if not diagnostic.isascii():  # lower() is not re's case folding beyond ASCII
            for rule in self.rules:
                if rule.regex.search(diagnostic):
                    return rule
            return None
        low = diagnostic.lower()
        for wanted, rule in self._filtered:
            if wanted:
                for needle in wanted:
                    if needle in low:
                        break
                else:
                    continue  # none of its needles: the regex cannot match
            if rule.regex.search(diagnostic):
                return rule
        return None

    def _decide(self, status: str, diagnostic: str) -> str:
        rule = self.rule_for(diagnostic)
        return rule.category if rule is not None else status_category(status)


@cache
def default_classifier() -> BounceClassifier:
    """The shipped rules alone: for callers without a configuration."""
    return BounceClassifier.with_extra()


def classify(status: str, diagnostic: str, *, expired: bool = False) -> str:
    """The category of one reply with the shipped rules (see the module docstring)."""
    return default_classifier().classify(status, diagnostic, expired=expired)
