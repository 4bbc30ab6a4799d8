from __future__ import annotations

import hashlib
import hmac

import pytest

from outrider.auth import passwords
from outrider.auth.passwords import (
    PasswordError,
    ScryptParams,
    derive_scram_credentials,
    hash_password,
    saslprep,
    verify_password,
)


def test_scrypt_round_trip() -> None:
    encoded = hash_password("correct horse")
    assert encoded.startswith("$scrypt$n=16,r=8,p=1$")
    assert "correct horse" not in encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsE", encoded)
    assert not verify_password("", encoded)


def test_salts_differ() -> None:
    assert hash_password("same") != hash_password("same")


def test_production_parameters_are_the_documented_ones() -> None:
    encoded = hash_password("pw", params=ScryptParams(n=2**15, r=8, p=1))
    assert encoded.startswith("$scrypt$n=32768,r=8,p=1$")
    assert verify_password("pw", encoded)


def test_stored_parameters_win_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = hash_password("pw", params=ScryptParams(n=32, r=4, p=2))
    monkeypatch.setattr(passwords, "DEFAULT_SCRYPT", ScryptParams(n=64, r=8, p=1))
    assert verify_password("pw", encoded)


@pytest.mark.parametrize(
    "encoded",
    [
        "$scrypt$n=16,r=8$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$n=15,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$n=2097152,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$n=1048576,r=16,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$n=16,r=8,p=1$!!!$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$n=16,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAA",
        "$scrypt$n=16,r=8,p=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$md5$abc",
        "plaintext",
    ],
)
def test_malformed_hashes_are_errors_not_false(encoded: str) -> None:
    with pytest.raises(PasswordError):
        verify_password("pw", encoded)
    with pytest.raises(PasswordError):
        passwords.check_hash(encoded)


def test_empty_password_rejected() -> None:
    with pytest.raises(PasswordError, match="empty"):
        hash_password("")


def test_unknown_scheme() -> None:
    with pytest.raises(PasswordError, match="unknown password scheme"):
        hash_password("pw", scheme="md5")


@pytest.mark.skipif(passwords.argon2_available(), reason="argon2-cffi is installed")
def test_argon2_without_package_is_a_clear_error() -> None:
    with pytest.raises(PasswordError, match="argon2-cffi"):
        hash_password("pw", scheme="argon2id")
    with pytest.raises(PasswordError, match="argon2-cffi"):
        verify_password("pw", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g")


@pytest.mark.skipif(not passwords.argon2_available(), reason="argon2-cffi not installed")
def test_argon2_round_trip() -> None:
    encoded = hash_password("pw", scheme="argon2id")
    assert encoded.startswith("$argon2id$")
    assert verify_password("pw", encoded)
    assert not verify_password("pW", encoded)


def test_dummy_verify_costs_a_real_verification() -> None:
    assert passwords.dummy_verify("anything") is False


@pytest.mark.parametrize(
    ("raw", "prepared"),
    [
        ("pencil", "pencil"),
        ("I\u00adX", "IX"),  # soft hyphen maps to nothing (RFC 4013 example)
        ("user", "user"),
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),  # NFKC
        ("a\u00a0b", "a b"),  # non-ASCII space maps to SPACE
    ],
)
def test_saslprep(raw: str, prepared: str) -> None:
    assert saslprep(raw) == prepared


@pytest.mark.parametrize("raw", ["\x07", "a\u0627\u0031", "\ufff0x"])
def test_saslprep_prohibited(raw: str) -> None:
    with pytest.raises(PasswordError):
        saslprep(raw)


def test_saslprep_makes_equivalent_passwords_verify() -> None:
    encoded = hash_password("\u2168")
    assert verify_password("IX", encoded)
    assert not verify_password("\x07", encoded)


def test_scram_credentials_match_rfc_5802_definitions() -> None:
    salt = b"0123456789abcdef"
    creds = derive_scram_credentials("pencil", salt=salt, iterations=4096)
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert creds.stored_key == hashlib.sha256(client_key).digest()
    assert creds.server_key == hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    assert (creds.salt, creds.iterations) == (salt, 4096)


def test_scram_defaults() -> None:
    creds = derive_scram_credentials("pw")
    assert creds.iterations == passwords.SCRAM_ITERATIONS >= 4096
    assert len(creds.salt) == 16
    with pytest.raises(PasswordError, match="4096"):
        derive_scram_credentials("pw", iterations=1000)
