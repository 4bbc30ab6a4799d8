"""Sans-I/O SASL server mechanisms for SMTP AUTH: SCRAM-SHA-256, PLAIN, LOGIN.

The SMTP layer owns the wire: it base64-decodes client lines, handles ``*``
(cancel) and bad base64, and base64-encodes each :class:`SaslStep` challenge into
``334 <b64>``. A mechanism only sees decoded bytes and answers with the next
step. Any malformed input ends the exchange with ``done=True, success=False``;
mechanisms never raise on client input.

Exchange shapes (``C:`` decoded client data, ``S:`` challenge bytes):

* PLAIN: ``[S: b""]`` ``C: authzid NUL authcid NUL passwd`` -> done.
* LOGIN: ``S: "Username:"`` ``C: user`` ``S: "Password:"`` ``C: pass`` -> done.
  An initial response is taken as the username.
* SCRAM-SHA-256: ``[S: b""]`` ``C: client-first`` ``S: server-first``
  ``C: client-final`` ``S: server-final ("v=...")`` ``C: b""`` -> done.
  SMTP AUTH cannot carry data in the 235 reply (RFC 4954 section 4), so the
  server signature goes out as a 334 challenge and the client's empty answer
  completes the exchange successfully.

PLAIN and LOGIN call :meth:`Verifier.verify_password`, which is deliberately slow
(scrypt); run ``start``/``step`` in a thread when they may verify a password.
SCRAM verification is a few HMACs and is cheap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Protocol

from outrider.auth.passwords import SCRAM_ITERATIONS, ScramCredentials

__all__ = [
    "LoginMechanism",
    "PlainMechanism",
    "SaslMechanism",
    "SaslStep",
    "ScramCredentials",
    "ScramSha256Mechanism",
    "Verifier",
    "mechanisms_for",
    "new_mechanism",
]


@dataclass(frozen=True, slots=True)
class SaslStep:
    """One server move: a challenge to send, or the final verdict."""

    challenge: bytes | None
    done: bool
    success: bool = False
    username: str | None = None


class SaslMechanism(Protocol):
    name: str

    def start(self, initial_response: bytes | None) -> SaslStep: ...

    def step(self, response: bytes) -> SaslStep: ...


class Verifier(Protocol):
    def verify_password(self, username: str, password: str) -> bool: ...

    def scram_credentials(self, username: str) -> ScramCredentials | None: ...

    def unknown_user_salt(self, username: str) -> bytes:
        """The SCRAM salt to show for a name that is no user: the same in every process
        and after a restart, as a real user's (:mod:`outrider.auth.secret`)."""
        ...


FAILED = SaslStep(challenge=None, done=True, success=False)


def _succeeded(username: str) -> SaslStep:
    return SaslStep(challenge=None, done=True, success=True, username=username)


def _decode(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# --------------------------------------------------------------------------- PLAIN


class PlainMechanism:
    """RFC 4616. The authorization identity must be empty or equal the authentication one."""

    name = "PLAIN"

    def __init__(self, verifier: Verifier) -> None:
        self._verifier = verifier
        self._state = 0  # 0 not started, 1 waiting for the response, 2 finished

    def start(self, initial_response: bytes | None) -> SaslStep:
        if self._state != 0:
            return self._fail()
        if initial_response is None:
            self._state = 1
            return SaslStep(challenge=b"", done=False)
        return self._finish(initial_response)

    def step(self, response: bytes) -> SaslStep:
        if self._state != 1:
            return self._fail()
        return self._finish(response)

    def _fail(self) -> SaslStep:
        self._state = 2
        return FAILED

    def _finish(self, message: bytes) -> SaslStep:
        self._state = 2
        parts = message.split(b"\x00")
        if len(parts) != 3:
            return FAILED
        authzid, authcid, passwd = (_decode(part) for part in parts)
        if authzid is None or authcid is None or passwd is None:
            return FAILED
        if not authcid or not passwd or (authzid and authzid != authcid):
            return FAILED
        if not self._verifier.verify_password(authcid, passwd):
            return FAILED
        return _succeeded(authcid)


# --------------------------------------------------------------------------- LOGIN


class LoginMechanism:
    """The obsolete but ubiquitous LOGIN mechanism (draft-murchison-sasl-login)."""

    name = "LOGIN"

    def __init__(self, verifier: Verifier) -> None:
        self._verifier = verifier
        self._state = 0  # 0 not started, 1 want username, 2 want password, 3 finished
        self._username = ""

    def start(self, initial_response: bytes | None) -> SaslStep:
        if self._state != 0:
            return self._fail()
        if initial_response is None:
            self._state = 1
            return SaslStep(challenge=b"Username:", done=False)
        return self._take_username(initial_response)

    def step(self, response: bytes) -> SaslStep:
        if self._state == 1:
            return self._take_username(response)
        if self._state == 2:
            self._state = 3
            password = _decode(response)
            if not password or not self._verifier.verify_password(self._username, password):
                return FAILED
            return _succeeded(self._username)
        return self._fail()

    def _take_username(self, data: bytes) -> SaslStep:
        username = _decode(data)
        if not username or "\x00" in username:
            return self._fail()
        self._username = username
        self._state = 2
        return SaslStep(challenge=b"Password:", done=False)

    def _fail(self) -> SaslStep:
        self._state = 3
        return FAILED


# --------------------------------------------------------------------------- SCRAM-SHA-256

_NONCE_BYTES = 18
_PROOF_BYTES = hashlib.sha256().digest_size


class _Malformed(Exception):
    pass


def _saslname(text: str) -> str:
    """Undo RFC 5802 saslname escaping: ``=2C`` is ``,`` and ``=3D`` is ``=``."""
    if "=" not in text:
        return text
    pieces = text.split("=")
    out = [pieces[0]]
    for piece in pieces[1:]:
        if piece.startswith("2C"):
            out.append("," + piece[2:])
        elif piece.startswith("3D"):
            out.append("=" + piece[2:])
        else:
            raise _Malformed
    return "".join(out)


def _valid_nonce(nonce: str) -> bool:
    # printable ASCII except "," (RFC 5802 "printable"), so no space either
    return (
        bool(nonce)
        and nonce.isascii()
        and nonce.isprintable()
        and not ("," in nonce or " " in nonce)
    )


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _Malformed from None


class ScramSha256Mechanism:
    """RFC 5802 / RFC 7677 server side, without channel binding (no -PLUS variant).

    Unknown users get a plausible server-first message with a stable fake salt (the
    verifier's ``unknown_user_salt``, from a secret shared by every process and kept
    across restarts) and fail only at the proof check, so SCRAM does not reveal which
    names exist.
    """

    name = "SCRAM-SHA-256"

    def __init__(self, verifier: Verifier, *, server_nonce: str | None = None) -> None:
        self._verifier = verifier
        self._server_nonce = server_nonce
        self._state = 0  # 0 start, 1 want client-first, 2 want client-final, 3 want b"", 4 done
        self._gs2_header = b""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._username = ""
        self._credentials: ScramCredentials | None = None
        self._known = False

    def start(self, initial_response: bytes | None) -> SaslStep:
        if self._state != 0:
            return self._fail()
        if initial_response is None:
            self._state = 1
            return SaslStep(challenge=b"", done=False)
        return self._client_first(initial_response)

    def step(self, response: bytes) -> SaslStep:
        try:
            if self._state == 1:
                return self._client_first(response)
            if self._state == 2:
                return self._client_final(response)
            if self._state == 3:
                self._state = 4
                if response:
                    return FAILED
                return _succeeded(self._username)
        except _Malformed:
            pass
        return self._fail()

    def _fail(self) -> SaslStep:
        self._state = 4
        return FAILED

    def _client_first(self, message: bytes) -> SaslStep:
        try:
            return self._parse_client_first(message)
        except _Malformed:
            return self._fail()

    def _parse_client_first(self, message: bytes) -> SaslStep:
        text = _decode(message)
        if text is None:
            raise _Malformed
        flag, sep1, rest = text.partition(",")
        authzid_field, sep2, bare = rest.partition(",")
        # "y": client could do channel binding but thinks we cannot -- true, we do not
        # offer -PLUS, so that is fine. "p=" asks for binding we never advertised.
        if not (sep1 and sep2) or flag not in ("n", "y"):
            raise _Malformed
        authzid = ""
        if authzid_field:
            if not authzid_field.startswith("a="):
                raise _Malformed
            authzid = _saslname(authzid_field[2:])
        fields = bare.split(",")
        if len(fields) < 2 or not fields[0].startswith("n=") or not fields[1].startswith("r="):
            raise _Malformed  # includes a leading reserved "m=" extension
        username = _saslname(fields[0][2:])
        client_nonce = fields[1][2:]
        if not username or not _valid_nonce(client_nonce) or (authzid and authzid != username):
            raise _Malformed
        credentials = self._verifier.scram_credentials(username)
        self._known = credentials is not None
        if credentials is None:
            salt = self._verifier.unknown_user_salt(username)
            random_key = secrets.token_bytes(_PROOF_BYTES)
            credentials = ScramCredentials(salt, SCRAM_ITERATIONS, random_key, random_key)
        server_nonce = self._server_nonce or secrets.token_urlsafe(_NONCE_BYTES)
        self._gs2_header = f"{flag},{authzid_field},".encode()
        self._client_first_bare = bare
        self._nonce = client_nonce + server_nonce
        salt_b64 = _b64(credentials.salt).decode("ascii")
        self._server_first = f"r={self._nonce},s={salt_b64},i={credentials.iterations}"
        self._username = username
        self._credentials = credentials
        self._state = 2
        return SaslStep(challenge=self._server_first.encode("ascii"), done=False)

    def _client_final(self, message: bytes) -> SaslStep:
        text = _decode(message)
        if text is None:
            raise _Malformed
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep or "," in proof_b64:
            raise _Malformed
        proof = _unb64(proof_b64)
        fields = without_proof.split(",")
        if len(fields) < 2 or not fields[0].startswith("c=") or not fields[1].startswith("r="):
            raise _Malformed
        if _unb64(fields[0][2:]) != self._gs2_header:
            raise _Malformed
        nonce_ok = hmac.compare_digest(fields[1][2:].encode(), self._nonce.encode())
        credentials = self._credentials
        self._state = 4
        if not nonce_ok or credentials is None or len(proof) != _PROOF_BYTES:
            return FAILED
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        auth_bytes = auth_message.encode("utf-8")
        client_signature = hmac.digest(credentials.stored_key, auth_bytes, "sha256")
        client_key = (
            int.from_bytes(proof, "big") ^ int.from_bytes(client_signature, "big")
        ).to_bytes(_PROOF_BYTES, "big")
        proof_ok = hmac.compare_digest(hashlib.sha256(client_key).digest(), credentials.stored_key)
        if not (proof_ok and self._known):
            return FAILED
        server_signature = hmac.digest(credentials.server_key, auth_bytes, "sha256")
        self._state = 3
        return SaslStep(challenge=b"v=" + _b64(server_signature), done=False)


# --------------------------------------------------------------------------- registry

_MECHANISMS: dict[str, type[PlainMechanism] | type[LoginMechanism] | type[ScramSha256Mechanism]]
_MECHANISMS = {
    "SCRAM-SHA-256": ScramSha256Mechanism,
    "PLAIN": PlainMechanism,
    "LOGIN": LoginMechanism,
}


def mechanisms_for(verifier: Verifier) -> list[str]:
    """Mechanism names to advertise in EHLO, strongest first.

    PLAIN and LOGIN send the password itself: offer them only over TLS.
    """
    del verifier  # every Verifier supports all three
    return list(_MECHANISMS)


def new_mechanism(name: str, verifier: Verifier) -> SaslMechanism | None:
    """A fresh server mechanism for ``AUTH name`` (case-insensitive), or None if unsupported."""
    factory = _MECHANISMS.get(name.upper())
    if factory is None:
        return None
    return factory(verifier)
