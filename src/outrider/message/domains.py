"""The one normal form of a domain name: its lower-case UTS 46 A-label form.

Every place that compares domains (the relay check, policy and config look-ups, queue
and routing keys, MX look-ups, the loop and postmaster checks, DSNs) uses
:func:`normalize_domain`, so ``straße.test``, ``STRASSE.test`` and
``xn--strae-oqa.test`` are each one domain everywhere: ``straße.test`` and
``xn--strae-oqa.test`` the same, ``strasse.test`` another (IDNA 2008 keeps ß).
Python's ``idna`` codec (IDNA 2003) would map ß to ss and make it ``strasse.test``.

Non-ASCII input is mapped with UTS 46 (non-transitional: width, case and compatibility
folding, ideographic full stops become dots) and each label is checked against IDNA 2008
by the ``idna`` package, as dnspython does. ASCII labels are taken as DNS has them:
letters, digits, ``-`` and ``_`` (``_dmarc``, ``r3---sn-x`` exist), lower-cased; an
``xn--`` label must also be a canonical A-label (see :func:`_checked_a_label`).
"""

from __future__ import annotations

import functools
import re

import idna

__all__ = [
    "MAX_DOMAIN_LENGTH",
    "InvalidDomainError",
    "domain_key",
    "is_address_literal",
    "normalize_domain",
]

MAX_DOMAIN_LENGTH = 253  # octets of the A-label form without the trailing dot (RFC 1035)
_MAX_LABEL_LENGTH = 63
_MAX_INPUT_LENGTH = 1024  # longer input is refused unread: mapping can drop characters
_ASCII_LABEL = re.compile(r"[a-z0-9_-]+")
_DOTS = re.compile("[.\u3002\uff0e\uff61]")  # UTS 46 maps these to "."
_ACE_PREFIX = "xn--"


class InvalidDomainError(ValueError):
    """``domain`` cannot be a domain name; ``reason`` says why. Callers decide what that
    means: no relay domain, a config error, a bounce, a 553 at RCPT."""

    def __init__(self, domain: str, reason: str) -> None:
        super().__init__(f"invalid domain name {domain!r}: {reason}")
        self.domain = domain
        self.reason = reason


def is_address_literal(domain: str) -> bool:
    """``[192.0.2.1]``, ``[IPv6:…]``: a host address, never a domain name."""
    return domain.startswith("[") and domain.endswith("]")


@functools.lru_cache(maxsize=16384)
def normalize_domain(domain: str) -> str:
    """Lower-case A-label form without the trailing dot; address literals unchanged.

    Raises :class:`InvalidDomainError` for what cannot be a domain name. Cached: the
    same few domains are normalised for every recipient, RCPT and look-up.
    """
    if is_address_literal(domain):
        return domain
    if not domain:
        raise InvalidDomainError(domain, "empty domain name")
    if len(domain) > _MAX_INPUT_LENGTH:
        raise InvalidDomainError(domain[:64] + "…", f"{len(domain)} characters long")
    text = domain
    if not text.isascii():
        try:
            text = idna.uts46_remap(text, std3_rules=False, transitional=False)
        except idna.IDNAError as exc:
            raise InvalidDomainError(domain, str(exc)) from None
    labels = _DOTS.split(text)
    if len(labels) > 1 and not labels[-1]:
        labels.pop()  # one trailing dot: the same, root-anchored, name
    result = ".".join([_a_label(domain, label) for label in labels])
    if len(result) > MAX_DOMAIN_LENGTH:
        raise InvalidDomainError(domain, f"longer than {MAX_DOMAIN_LENGTH} characters")
    return result


def domain_key(domain: str) -> str:
    """:func:`normalize_domain`, or for what cannot be a domain name the text lower-cased
    without its trailing dot: a key for comparisons that must not fail, which then
    equals no valid name."""
    try:
        return normalize_domain(domain)
    except InvalidDomainError:
        return domain.lower().removesuffix(".")


def _a_label(domain: str, label: str) -> str:
    """One label's A-label form; ``domain`` is for the error message."""
    if not label:
        raise InvalidDomainError(domain, "empty label")
    if not label.isascii():
        try:
            return idna.alabel(label).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidDomainError(domain, f"label {label!r}: {exc}") from None
    label = label.lower()
    if len(label) > _MAX_LABEL_LENGTH:
        raise InvalidDomainError(domain, f"label longer than {_MAX_LABEL_LENGTH} characters")
    if not _ASCII_LABEL.fullmatch(label):
        raise InvalidDomainError(domain, f"label {label!r} holds a character not allowed")
    return _checked_a_label(domain, label) if label.startswith(_ACE_PREFIX) else label


def _checked_a_label(domain: str, label: str) -> str:
    """An ``xn--`` label as DNS has it, once it is the one encoding (RFC 5891 5.3) of a
    label UTS 46 leaves unchanged; else one Unicode name would have two A-label spellings.
    IDNA 2008's narrower repertoire is not asked of it, so a name registered under IDNA
    2003 (``xn--n3h.com``, ☃.com) stays deliverable, as it is for dnspython."""
    try:
        unicode = label[len(_ACE_PREFIX) :].encode("ascii").decode("punycode")
    except UnicodeError:
        raise InvalidDomainError(domain, f"label {label!r} is not valid Punycode") from None
    try:
        mapped = idna.uts46_remap(unicode, std3_rules=False, transitional=False)
    except idna.IDNAError as exc:
        raise InvalidDomainError(domain, f"label {label!r}: {exc}") from None
    encoded = _ACE_PREFIX + unicode.encode("punycode").decode("ascii")
    if unicode.isascii() or mapped != unicode or encoded != label:
        raise InvalidDomainError(domain, f"label {label!r} is not a canonical A-label")
    return label
