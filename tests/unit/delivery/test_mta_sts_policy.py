"""MTA-STS policy and TXT parsing (RFC 8461 3.1/3.2), MX matching and TLS requirements."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from outrider.delivery.mta_sts import (
    MAX_POLICY_MAX_AGE,
    StsPolicy,
    StsPolicyError,
    parse_policy,
    parse_txt_record,
)
from outrider.delivery.tls_policy import (
    TlsRequirement,
    client_context,
    mx_allowed,
    mx_refused_reply,
    tls_requirement,
)

VALID = (
    "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\n"
    "max_age: 86400\r\n"
)


def parse(text: str) -> StsPolicy:
    return parse_policy(text, policy_id="abc", fetched_at=1000.0)


# -- policy file ---------------------------------------------------------------------


def test_valid_policy_crlf() -> None:
    policy = parse(VALID)
    assert policy == StsPolicy(
        "enforce", ("mx1.example.com", "*.example.net"), 86400, "abc", 1000.0
    )
    assert policy.expires_at == 1000.0 + 86400


def test_valid_policy_lf_case_and_whitespace() -> None:
    text = (
        "Version: STSv1\nMODE:testing\nmx:  MX.Example.COM  \nmax_age: 0\nx-custom: any value here"
    )
    policy = parse(text)
    assert policy.mode == "testing" and policy.mx == ("mx.example.com",) and policy.max_age == 0


def test_multiple_mx_kept_in_order_without_duplicates() -> None:
    text = "version: STSv1\nmode: enforce\nmx: a.test\nmx: b.test\nmx: a.test\nmax_age: 60\n"
    assert parse(text).mx == ("a.test", "b.test")


def test_mode_none_needs_no_mx() -> None:
    policy = parse("version: STSv1\nmode: none\nmax_age: 60\n")
    assert policy.mode == "none" and policy.mx == ()


@pytest.mark.parametrize("age", ["0", "1", "604800", str(MAX_POLICY_MAX_AGE)])
def test_max_age_in_bounds(age: str) -> None:
    assert parse(f"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: {age}\n").max_age == int(age)


@pytest.mark.parametrize(
    "age", [str(MAX_POLICY_MAX_AGE + 1), "-1", "1.5", "12345678901", "0x10", "", "١٢"]
)
def test_max_age_out_of_bounds_or_malformed(age: str) -> None:
    with pytest.raises(StsPolicyError):
        parse(f"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: {age}\n")


@pytest.mark.parametrize(
    "text",
    [
        "mode: enforce\nmx: a.test\nmax_age: 60\n",  # no version
        "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 60\n",
        "version: STSv1\nmx: a.test\nmax_age: 60\n",  # no mode
        "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 60\n",
        "version: STSv1\nmode: enforce\nmode: testing\nmx: a.test\nmax_age: 60\n",
        "version: STSv1\nmode: enforce\nmx: a.test\n",  # no max_age
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 60\nmax_age: 70\n",
        "version: STSv1\nmode: enforce\nmax_age: 60\n",  # enforce without mx
        "version: STSv1\nmode: testing\nmax_age: 60\n",
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 60\ngarbage line\n",
        "version : STSv1\nmode: enforce\nmx: a.test\nmax_age: 60\n",  # space before colon
        "version: STSv1\nmode: enforce\nmx:\nmax_age: 60\n",
        "version: STSv1\nmode: enforce\nmx: *.*.a.test\nmax_age: 60\n",
        "version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 60\n",
        "version: STSv1\nmode: enforce\nmx: -a.test\nmax_age: 60\n",
        "version: STSv1\nmode: enforce\nmx: a.test:25\nmax_age: 60\n",
        "version: STSv1\nmode: enforce\nmx: a_b.test\nmax_age: 60\n",
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 60\n_bad-key: x\n",
        "",
    ],
)
def test_invalid_policies(text: str) -> None:
    with pytest.raises(StsPolicyError):
        parse(text)


def test_json_round_trip_and_validation() -> None:
    policy = parse(VALID)
    assert StsPolicy.from_json(policy.to_json()) == policy
    broken = policy.to_json() | {"max_age": MAX_POLICY_MAX_AGE + 1}
    with pytest.raises(StsPolicyError):
        StsPolicy.from_json(broken)
    with pytest.raises(StsPolicyError):
        StsPolicy.from_json(policy.to_json() | {"mx": ["bad pattern"]})
    with pytest.raises(StsPolicyError):
        StsPolicy.from_json([])


# -- TXT record ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (["v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
        (["v=STSv1;id=abc"], "abc"),
        (["v=STSv1 ; id=abc ; ext.x=1;"], "abc"),
        (["v=spf1 -all", "v=STSv1; id=abc"], "abc"),
    ],
)
def test_txt_record_valid(records: list[str], expected: str) -> None:
    assert parse_txt_record(records) == expected


@pytest.mark.parametrize(
    "records",
    [
        [],
        ["v=spf1 -all"],
        ["v=STSv1; id=a", "v=STSv1; id=b"],  # several records: no policy
        ["v=STSv1;"],  # no id
        ["v=STSv1; id=a; id=b"],
        ["v=STSv1; id=has-dash"],
        ["v=STSv1; id=" + "a" * 33],
        ["v=STSv1; id=a;; x=1"],
        ["v=STSv10; id=a"],
        ["V=STSv1; id=a"],
        ["v=STSv1; id=a; bad field"],
    ],
)
def test_txt_record_invalid(records: list[str]) -> None:
    with pytest.raises(StsPolicyError):
        parse_txt_record(records)


# -- MX matching -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "patterns", "allowed"),
    [
        ("mx1.example.com", ["mx1.example.com"], True),
        ("MX1.Example.COM.", ["mx1.example.com"], True),
        ("mx2.example.com", ["mx1.example.com"], False),
        ("mx1.example.com", ["*.example.com"], True),
        ("a.b.example.com", ["*.example.com"], False),  # exactly one label
        ("example.com", ["*.example.com"], False),
        ("mx.example.org", ["mx1.example.com", "*.example.org"], True),
        ("mx.example.com", [], False),
        ("xexample.com", ["*.example.com"], False),
    ],
)
def test_mx_allowed(host: str, patterns: list[str], allowed: bool) -> None:
    assert mx_allowed(host, patterns) is allowed


def test_mx_refused_reply_is_transient() -> None:
    reply = mx_refused_reply("mx.evil.test")
    assert reply.code == 451 and reply.enhanced == "4.7.5" and "mx.evil.test" in reply.text


# -- TLS requirement -------------------------------------------------------------------


def sts(mode: str) -> StsPolicy:
    return StsPolicy(mode, ("*.example.com",), 600, "id1", 0.0)  # type: ignore[arg-type]


def req(**kw: object) -> TlsRequirement:
    options: dict[str, object] = {
        "use_starttls": True,
        "require_starttls": False,
        "tls_verify": "none",
        "tls_ca_file": None,
        "sts": None,
    }
    options.update(kw)
    return tls_requirement(**options)  # type: ignore[arg-type]


def test_requirement_opportunistic_default() -> None:
    assert req() == TlsRequirement("opportunistic", "none")


def test_requirement_no_starttls() -> None:
    assert req(use_starttls=False) == TlsRequirement("none", "none")


def test_requirement_required_unverified() -> None:
    assert req(require_starttls=True) == TlsRequirement("required", "none")


def test_requirement_required_verified() -> None:
    ca = Path("/etc/ca.pem")
    result = req(require_starttls=True, tls_verify="ca+hostname", tls_ca_file=ca)
    assert result == TlsRequirement("required", "ca+hostname", ca)
    assert result.fallback() is None


def test_requirement_opportunistic_verified_falls_back_stepwise() -> None:
    ca = Path("/etc/ca.pem")
    result = req(tls_verify="ca", tls_ca_file=ca)
    assert result == TlsRequirement("opportunistic", "ca", ca)
    unverified = result.fallback()
    assert unverified == TlsRequirement("opportunistic", "none")
    assert unverified.fallback() == TlsRequirement("none", "none")
    assert TlsRequirement("none", "none").fallback() is None


def test_requirement_no_starttls_ignores_verify_level() -> None:
    assert req(use_starttls=False, tls_verify="ca+hostname") == TlsRequirement("none", "none")


def test_requirement_sts_enforce_overrides_policy() -> None:
    result = req(use_starttls=False, sts=sts("enforce"))
    assert result.mode == "required" and result.verify == "ca+hostname" and not result.fallback()
    assert result.mx_patterns == ("*.example.com",) and result.source == "mta-sts"
    assert not result.permits_mx("mx.other.test") and result.permits_mx("mx.example.com")


def test_requirement_sts_testing_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    result = req(sts=sts("testing"))
    assert result.mode == "opportunistic" and result.verify == "none"
    assert result.mx_patterns == () and result.source == "mta-sts-testing"
    assert result.permits_mx("mx.other.test")
    assert "MTA-STS testing" in caplog.text and "mx.other.test" in caplog.text
    assert req(require_starttls=True, sts=sts("testing")).mode == "required"


def test_requirement_sts_none_ignored() -> None:
    assert req(sts=sts("none")) == TlsRequirement("opportunistic", "none")


def test_requirement_rejects_unknown_verify_level() -> None:
    with pytest.raises(ValueError):
        req(tls_verify="strict")


# -- SSL contexts ----------------------------------------------------------------------


def test_client_context_levels(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    none = client_context(TlsRequirement("opportunistic", "none"))
    assert none.verify_mode == ssl.CERT_NONE and not none.check_hostname
    assert none.minimum_version == ssl.TLSVersion.TLSv1_2
    ca = client_context(TlsRequirement("required", "ca", ca_file))
    assert ca.verify_mode == ssl.CERT_REQUIRED and not ca.check_hostname
    full = client_context(TlsRequirement("required", "ca+hostname", ca_file))
    assert full.verify_mode == ssl.CERT_REQUIRED and full.check_hostname
    assert full.get_ca_certs() and full is client_context(
        TlsRequirement("required", "ca+hostname", ca_file, source="mta-sts")
    )


def test_client_context_missing_ca_file(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        client_context(TlsRequirement("required", "ca", tmp_path / "missing.pem"))
