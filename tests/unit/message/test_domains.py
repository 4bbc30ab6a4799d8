"""normalize_domain: the one normal form (UTS 46, IDNA 2008 A-labels) of a domain."""

from __future__ import annotations

import idna
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outrider.message.domains import (
    InvalidDomainError,
    domain_key,
    is_address_literal,
    normalize_domain,
)


@pytest.mark.parametrize(
    ("domain", "normalized"),
    [
        ("straße.test", "xn--strae-oqa.test"),  # IDNA 2008 keeps ß (IDNA 2003: strasse)
        ("STRASSE.test", "strasse.test"),  # ...so this is another domain
        ("ÖBB.at", "xn--bb-eka.at"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("XN--STRAE-OQA.Test.", "xn--strae-oqa.test"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("例え。テスト", "xn--r8jz45g.xn--zckzah"),  # ideographic full stop
        ("\uff21\uff22\uff23.test", "abc.test"),  # full-width letters are mapped
        ("ﬀ.test", "ff.test"),  # compatibility ligature
        ("ab\u00adc.test", "abc.test"),  # soft hyphen is ignored
        ("ς.gr", "xn--3xa.gr"),  # non-transitional: final sigma stays
        ("\u0627.test", "xn--mgb.test"),  # a right-to-left label
        ("_dmarc.example.com", "_dmarc.example.com"),  # DNS has these
        ("r3---sn-abc.example", "r3---sn-abc.example"),  # and these
        ("bücher.r3---sn.test", "xn--bcher-kva.r3---sn.test"),
        ("1.2.3.4", "1.2.3.4"),
        ("a" * 63 + ".test", "a" * 63 + ".test"),
    ],
)
def test_normal_form(domain: str, normalized: str) -> None:
    assert normalize_domain(domain) == normalized


@pytest.mark.parametrize("literal", ["[192.0.2.1]", "[IPv6:2001:DB8::1]", "[ipv6:::1]"])
def test_address_literals_pass_unchanged(literal: str) -> None:
    assert is_address_literal(literal)
    assert normalize_domain(literal) == literal


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("", "empty domain name"),
        (".", "empty label"),
        ("a..b", "empty label"),
        ("a.b..", "empty label"),
        (".a", "empty label"),
        ("\u00ad.test", "empty label"),  # nothing left once mapped
        ("x" * 64 + ".test", "label longer than 63"),
        (".".join(["a" * 60] * 5), "longer than 253"),
        ("a" * 5000, "5000 characters long"),
        ("😀.test", "not allowed"),  # emoji: disallowed in IDNA 2008 (UTS 46 NV8)
        ("☃.test", "not allowed"),
        ("a b.test", "not allowed"),
        ("a/b.test", "not allowed"),
        ("[1.2.3.4", "not allowed"),
        ("xn--zz.test", "not valid Punycode"),
        ("xn---bbk.test", "not a canonical A-label"),  # a second spelling of xn--bbk
        ("xn--.test", "not a canonical A-label"),
        ("xn--abc-.test", "not a canonical A-label"),  # decodes to ASCII
        ("xn--ber-ska.test", "not a canonical A-label"),  # "Über": UTS 46 maps it to über
        ("xn--im6c.test", "not a canonical A-label"),  # the ligature ﬀ: mapped to ff
        ("xn--ab-yu3n.test", "not a canonical A-label"),  # a full-width dot inside
        ("-bücher.test", "hyphen"),
        ("a\u0627.test", "direction"),  # mixed directions in one label
        ("a\u200db.test", "Joiner"),
    ],
)
def test_what_cannot_be_a_domain_is_refused_with_its_reason(domain: str, reason: str) -> None:
    with pytest.raises(InvalidDomainError, match=reason) as info:
        normalize_domain(domain)
    assert isinstance(info.value, ValueError)  # config and callers may treat it as one
    assert reason in info.value.reason


def test_existing_a_labels_outside_idna_2008_stay_deliverable() -> None:
    """☃.com and i❤.ws were registered under IDNA 2003; DNS (and dnspython) still
    serve their A-labels, so those are kept. Their Unicode form is refused, as by
    dnspython: we only produce IDNA 2008 A-labels."""
    assert normalize_domain("XN--N3H.com") == "xn--n3h.com"
    assert normalize_domain("xn--i-7iq.ws") == "xn--i-7iq.ws"
    with pytest.raises(InvalidDomainError):
        normalize_domain("\u2603.com")


def test_spellings_of_one_domain_are_one_and_strasse_another() -> None:
    spellings = ["straße.test", "STRAßE.test", "xn--strae-oqa.test", "XN--STRAE-OQA.TEST."]
    assert {normalize_domain(s) for s in spellings} == {"xn--strae-oqa.test"}
    assert normalize_domain("strasse.test") != normalize_domain("straße.test")
    # The defect this module removes: Python's codec is IDNA 2003.
    assert "straße.test".encode("idna") == b"strasse.test"


def test_domain_key_never_fails() -> None:
    assert domain_key("Straße.Test.") == "xn--strae-oqa.test"
    assert domain_key("A..B.") == "a..b"
    assert domain_key("☃.TEST") == "☃.test"
    assert domain_key("") == ""


@given(st.text(alphabet=st.sampled_from("aZ09-_.ßöÖς\u3002\uff21\u00ad😀xn"), max_size=30))
def test_normal_form_is_stable(text: str) -> None:
    """Whatever normalises, normalises to itself, and to the same as its U-label form."""
    try:
        normal = normalize_domain(text)
    except InvalidDomainError:
        return
    assert normal.isascii() and normal == normal.lower() and not normal.endswith(".")
    assert normalize_domain(normal) == normal
    unicode = ".".join(idna.ulabel(x) if x.startswith("xn--") else x for x in normal.split("."))
    assert normalize_domain(unicode) == normal
