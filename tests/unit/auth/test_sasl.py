from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

import pytest

from outrider.auth.passwords import ScramCredentials, derive_scram_credentials
from outrider.auth.sasl import (
    SaslStep,
    ScramSha256Mechanism,
    mechanisms_for,
    new_mechanism,
)

FAILED = SaslStep(challenge=None, done=True, success=False)


@dataclass
class FakeVerifier:
    """Plaintext verifier for protocol tests; records what the mechanisms asked for."""

    passwords: dict[str, str] = field(default_factory=dict)
    scram: dict[str, ScramCredentials] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def verify_password(self, username: str, password: str) -> bool:
        self.calls.append((username, password))
        return self.passwords.get(username) == password

    def scram_credentials(self, username: str) -> ScramCredentials | None:
        return self.scram.get(username)

    def unknown_user_salt(self, username: str) -> bytes:
        return hashlib.sha256(b"test secret" + username.encode()).digest()[:16]


@pytest.fixture
def verifier() -> FakeVerifier:
    return FakeVerifier(
        passwords={"alice": "s3cret", "bj\u00f6rn": "p\u00e4ss"},
        scram={"user": derive_scram_credentials("pencil", iterations=4096)},
    )


def succeeded(username: str) -> SaslStep:
    return SaslStep(challenge=None, done=True, success=True, username=username)


# --------------------------------------------------------------------------- registry


def test_advertised_order(verifier: FakeVerifier) -> None:
    assert mechanisms_for(verifier) == ["SCRAM-SHA-256", "PLAIN", "LOGIN"]


@pytest.mark.parametrize("name", ["plain", "PLAIN", "Login", "scram-sha-256"])
def test_lookup_is_case_insensitive(verifier: FakeVerifier, name: str) -> None:
    mechanism = new_mechanism(name, verifier)
    assert mechanism is not None
    assert mechanism.name == name.upper()


@pytest.mark.parametrize("name", ["CRAM-MD5", "SCRAM-SHA-256-PLUS", "XOAUTH2", "", "SCRAM-SHA-1"])
def test_unsupported(verifier: FakeVerifier, name: str) -> None:
    assert new_mechanism(name, verifier) is None


# --------------------------------------------------------------------------- PLAIN


def plain(verifier: FakeVerifier, message: bytes) -> SaslStep:
    mechanism = new_mechanism("PLAIN", verifier)
    assert mechanism is not None
    return mechanism.start(message)


def test_plain_initial_response(verifier: FakeVerifier) -> None:
    assert plain(verifier, b"\x00alice\x00s3cret") == succeeded("alice")


def test_plain_without_initial_response(verifier: FakeVerifier) -> None:
    mechanism = new_mechanism("PLAIN", verifier)
    assert mechanism is not None
    assert mechanism.start(None) == SaslStep(challenge=b"", done=False)
    assert mechanism.step(b"alice\x00alice\x00s3cret") == succeeded("alice")
    assert mechanism.step(b"alice\x00alice\x00s3cret") == FAILED  # finished means finished


def test_plain_utf8(verifier: FakeVerifier) -> None:
    assert plain(verifier, "\x00bj\u00f6rn\x00p\u00e4ss".encode()) == succeeded("bj\u00f6rn")


@pytest.mark.parametrize(
    "message",
    [
        b"\x00alice\x00wrong",
        b"bob\x00alice\x00s3cret",  # authzid differs from authcid
        b"\x00alice\x00",  # empty password
        b"\x00\x00s3cret",  # empty authcid
        b"alice\x00s3cret",  # two fields
        b"\x00alice\x00s3cret\x00",  # four fields
        b"",  # "=": empty initial response
        b"\x00alice\x00s3cr\xffet",  # not UTF-8
        b"\x00al\xc3ice\x00s3cret",
    ],
)
def test_plain_failures(verifier: FakeVerifier, message: bytes) -> None:
    assert plain(verifier, message) == FAILED


def test_plain_structure_errors_do_not_reach_the_verifier(verifier: FakeVerifier) -> None:
    plain(verifier, b"bob\x00alice\x00s3cret")
    plain(verifier, b"\x00alice\x00")
    assert verifier.calls == []


# --------------------------------------------------------------------------- LOGIN


def test_login_dialogue(verifier: FakeVerifier) -> None:
    mechanism = new_mechanism("LOGIN", verifier)
    assert mechanism is not None
    assert mechanism.start(None) == SaslStep(challenge=b"Username:", done=False)
    assert mechanism.step(b"alice") == SaslStep(challenge=b"Password:", done=False)
    assert mechanism.step(b"s3cret") == succeeded("alice")
    assert mechanism.step(b"again") == FAILED


def test_login_initial_response_is_the_username(verifier: FakeVerifier) -> None:
    mechanism = new_mechanism("LOGIN", verifier)
    assert mechanism is not None
    assert mechanism.start(b"alice") == SaslStep(challenge=b"Password:", done=False)
    assert mechanism.step(b"s3cret") == succeeded("alice")


@pytest.mark.parametrize(
    ("username", "password"),
    [
        (b"alice", b"wrong"),
        (b"alice", b""),
        (b"", b"s3cret"),
        (b"ali\xffce", b"s3cret"),
        (b"alice", b"s3cr\xffet"),
        (b"ali\x00ce", b"s3cret"),
    ],
)
def test_login_failures(verifier: FakeVerifier, username: bytes, password: bytes) -> None:
    mechanism = new_mechanism("LOGIN", verifier)
    assert mechanism is not None
    mechanism.start(None)
    step = mechanism.step(username)
    if not step.done:
        step = mechanism.step(password)
    assert step == FAILED


# --------------------------------------------------------------------------- SCRAM


class ScramClient:
    """An independent RFC 5802 client built from hashlib/hmac only."""

    def __init__(self, username: str, password: str, nonce: str, gs2: str = "n,,") -> None:
        self.username, self.password, self.nonce, self.gs2 = username, password, nonce, gs2
        self.bare = f"n={username.replace('=', '=3D').replace(',', '=2C')},r={nonce}"
        self.server_signature = b""

    def first(self) -> bytes:
        return (self.gs2 + self.bare).encode()

    def final(self, server_first: bytes, *, tamper: bool = False) -> bytes:
        fields = dict(item.split("=", 1) for item in server_first.decode().split(","))
        assert fields["r"].startswith(self.nonce)
        salt = base64.b64decode(fields["s"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, int(fields["i"]))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        channel = base64.b64encode(self.gs2.encode()).decode()
        without_proof = f"c={channel},r={fields['r']}"
        auth_message = f"{self.bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        if tamper:
            proof = bytes([proof[0] ^ 1]) + proof[1:]
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def scram(verifier: FakeVerifier) -> ScramSha256Mechanism:
    mechanism = new_mechanism("SCRAM-SHA-256", verifier)
    assert isinstance(mechanism, ScramSha256Mechanism)
    return mechanism


@pytest.mark.parametrize("gs2", ["n,,", "y,,", "n,a=user,"])
def test_scram_full_exchange(verifier: FakeVerifier, gs2: str) -> None:
    client = ScramClient("user", "pencil", "fyko+d2lbbFgONRv9qkxdawL", gs2)
    mechanism = scram(verifier)
    assert mechanism.start(None) == SaslStep(challenge=b"", done=False)
    server_first = mechanism.step(client.first())
    assert not server_first.done and server_first.challenge is not None
    assert server_first.challenge.startswith(b"r=fyko+d2lbbFgONRv9qkxdawL")
    assert b",s=" in server_first.challenge and server_first.challenge.endswith(b",i=4096")
    server_final = mechanism.step(client.final(server_first.challenge))
    assert server_final == SaslStep(
        challenge=b"v=" + base64.b64encode(client.server_signature), done=False
    )
    assert mechanism.step(b"") == succeeded("user")


def test_scram_initial_response_and_fresh_nonces(verifier: FakeVerifier) -> None:
    nonces = set()
    for _ in range(3):
        mechanism = scram(verifier)
        step = mechanism.start(ScramClient("user", "pencil", "abc").first())
        assert step.challenge is not None
        nonces.add(step.challenge.split(b",")[0])
    assert len(nonces) == 3


def test_rfc7677_test_vector() -> None:
    """RFC 7677 section 3, with the server nonce and salt the RFC used."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = FakeVerifier(
        scram={"user": derive_scram_credentials("pencil", salt=salt, iterations=4096)}
    )
    mechanism = ScramSha256Mechanism(verifier, server_nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    step = mechanism.start(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert step.challenge == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    step = mechanism.step(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert step == SaslStep(challenge=b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", done=False)
    assert mechanism.step(b"") == succeeded("user")


def test_scram_wrong_password(verifier: FakeVerifier) -> None:
    client = ScramClient("user", "pencil2", "abc")
    mechanism = scram(verifier)
    first = mechanism.start(client.first())
    assert first.challenge is not None
    assert mechanism.step(client.final(first.challenge)) == FAILED


def test_scram_tampered_proof(verifier: FakeVerifier) -> None:
    client = ScramClient("user", "pencil", "abc")
    mechanism = scram(verifier)
    first = mechanism.start(client.first())
    assert first.challenge is not None
    assert mechanism.step(client.final(first.challenge, tamper=True)) == FAILED


def test_scram_unknown_user_looks_like_a_known_one(verifier: FakeVerifier) -> None:
    challenges = []
    for _ in range(2):
        mechanism = scram(verifier)
        step = mechanism.start(b"n,,n=nobody,r=abc")
        assert not step.done and step.challenge is not None
        challenges.append(step.challenge)
    salts = {c.split(b",")[1] for c in challenges}
    assert len(salts) == 1  # stable fake salt, as a real user would have
    assert challenges[0].endswith(b",i=10000")
    client = ScramClient("nobody", "anything", "abc")
    assert mechanism.step(client.final(challenges[1])) == FAILED


def test_scram_unknown_user_salt_comes_from_the_verifier(verifier: FakeVerifier) -> None:
    """Not from a secret of this process: the verifier's is shared and kept on disk."""
    step = scram(verifier).start(b"n,,n=nobody,r=abc")
    assert step.challenge is not None
    salt = base64.b64decode(step.challenge.split(b",")[1][2:])
    assert salt == verifier.unknown_user_salt("nobody")


def test_scram_unknown_user_fails_even_with_a_valid_proof(
    verifier: FakeVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: the fake keys for unknown users never authenticate anyone."""
    client_key = b"k" * 32
    monkeypatch.setattr("secrets.token_bytes", lambda n=None: hashlib.sha256(client_key).digest())
    mechanism = scram(verifier)
    step = mechanism.start(b"n,,n=ghost,r=abc")
    assert step.challenge is not None
    without_proof = f"c=biws,r={step.challenge.split(b',')[0][2:].decode()}"
    auth = f"n=ghost,r=abc,{step.challenge.decode()},{without_proof}".encode()
    stored_key = hashlib.sha256(client_key).digest()
    signature = hmac.new(stored_key, auth, hashlib.sha256).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    assert mechanism.step(f"{without_proof},p={proof.decode()}".encode()) == FAILED
    # The same proof against a real user with those keys would have succeeded:
    verifier.scram["ghost"] = ScramCredentials(
        base64.b64decode(step.challenge.split(b",")[1][2:]), 10000, stored_key, stored_key
    )
    real = ScramSha256Mechanism(verifier, server_nonce=step.challenge.split(b",")[0][5:].decode())
    assert real.start(b"n,,n=ghost,r=abc").challenge == step.challenge
    assert not real.step(f"{without_proof},p={proof.decode()}".encode()).done


def test_scram_escaped_username() -> None:
    verifier = FakeVerifier(scram={"a,b=c": derive_scram_credentials("pw", iterations=4096)})
    client = ScramClient("a,b=c", "pw", "xyz")
    assert client.bare.startswith("n=a=2Cb=3Dc,")
    mechanism = scram(verifier)
    first = mechanism.start(client.first())
    assert first.challenge is not None
    assert not mechanism.step(client.final(first.challenge)).done
    assert mechanism.step(b"") == succeeded("a,b=c")


def test_scram_final_response_must_be_empty(verifier: FakeVerifier) -> None:
    client = ScramClient("user", "pencil", "abc")
    mechanism = scram(verifier)
    first = mechanism.start(client.first())
    assert first.challenge is not None
    mechanism.step(client.final(first.challenge))
    assert mechanism.step(b"junk") == FAILED


@pytest.mark.parametrize(
    "client_first",
    [
        b"p=tls-unique,,n=user,r=abc",  # channel binding requested
        b"n,,m=ext,n=user,r=abc",  # mandatory extension
        b"x,,n=user,r=abc",
        b"n,a=other,n=user,r=abc",  # authzid differs
        b"n,b=user,n=user,r=abc",
        b"n,,n=,r=abc",
        b"n,,n=user,r=",
        b"n,,n=user",
        b"n,,r=abc,n=user",
        b"n,,n=us=41er,r=abc",  # bad escape
        b"n,,n=user,r=a b",
        b"n,,n=us\xffer,r=abc",
        b"n,n=user,r=abc",
        b"",
    ],
)
def test_scram_bad_client_first(verifier: FakeVerifier, client_first: bytes) -> None:
    mechanism = scram(verifier)
    assert mechanism.start(client_first) == FAILED
    assert mechanism.step(b"anything") == FAILED


def _final_variants(good: bytes) -> list[bytes]:
    without_proof, _, proof = good.rpartition(b",p=")
    channel, nonce = without_proof.split(b",", 1)
    return [
        without_proof,  # no proof
        without_proof + b",p=!!!!",  # bad base64
        without_proof + b",p=" + base64.b64encode(b"short"),
        b"c=eSws," + nonce + b",p=" + proof,  # gs2 header "y,," but client sent "n,,"
        b"c=biws,r=abc-wrong-nonce,p=" + proof,
        nonce + b"," + channel + b",p=" + proof,
        good + b"\xff",
    ]


@pytest.mark.parametrize("variant", range(7))
def test_scram_bad_client_final(verifier: FakeVerifier, variant: int) -> None:
    client = ScramClient("user", "pencil", "abc")
    mechanism = scram(verifier)
    first = mechanism.start(client.first())
    assert first.challenge is not None
    bad = _final_variants(client.final(first.challenge))[variant]
    assert mechanism.step(bad) == FAILED
    assert mechanism.step(b"") == FAILED


def test_mechanisms_cannot_start_twice(verifier: FakeVerifier) -> None:
    for name in mechanisms_for(verifier):
        mechanism = new_mechanism(name, verifier)
        assert mechanism is not None
        mechanism.start(None)
        assert mechanism.start(None) == FAILED
