"""Server SSL contexts and the development certificate."""

from __future__ import annotations

import datetime
import os
import ssl
import stat
import time
from pathlib import Path

import pytest
import trustme

from outrider.inbound.tls import TlsError, follow_current, generate_self_signed, server_context
from tests.support.inbound import client_tls, tls_files


def test_context_floor_and_options(tmp_path: Path) -> None:
    cert, key = tls_files(trustme.CA(), tmp_path)
    ctx = server_context(cert, key)
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 and all("GCM" in name or "CHACHA20" in name for name in tls12)
    assert server_context(cert, key, min_version="TLSv1.3").minimum_version is (
        ssl.TLSVersion.TLSv1_3
    )


def test_unloadable_files_name_the_paths(tmp_path: Path) -> None:
    cert, key = tls_files(trustme.CA(), tmp_path)
    with pytest.raises(TlsError, match=r"missing\.pem"):
        server_context(tmp_path / "missing.pem", key)
    other_key = tls_files(trustme.CA(), tmp_path / "other")[1]
    with pytest.raises(TlsError, match="cannot load"):
        server_context(cert, other_key)
    with pytest.raises(TlsError, match="tls-min-version"):
        server_context(cert, key, min_version="TLSv1.1")


def test_generate_self_signed(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    assert generate_self_signed(cert, key, "mta.example.test")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    server_context(cert, key)  # loads
    info = ssl._ssl._test_decode_cert(str(cert))  # type: ignore[attr-defined]
    assert ("DNS", "mta.example.test") in info["subjectAltName"]
    before = cert.read_bytes()
    assert not generate_self_signed(cert, key, "mta.example.test")  # kept
    assert cert.read_bytes() == before
    assert generate_self_signed(cert, key, "127.0.0.1", overwrite=True)
    info = ssl._ssl._test_decode_cert(str(cert))  # type: ignore[attr-defined]
    assert ("IP Address", "127.0.0.1") in info["subjectAltName"]


def test_tls12_suites_are_exactly_the_forward_secret_aead_ones(tmp_path: Path) -> None:
    """Mozilla's "intermediate" TLS 1.2 list, in its order; the server picks."""
    ctx = server_context(*tls_files(trustme.CA(), tmp_path))
    tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert sorted(tls12) == [
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
    assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert ctx.verify_mode is ssl.CERT_NONE  # SMTP servers do not ask for client certificates


def test_missing_file_error_gives_the_reason_without_errno(tmp_path: Path) -> None:
    cert, _ = tls_files(trustme.CA(), tmp_path)
    missing = tmp_path / "missing.pem"
    with pytest.raises(TlsError) as caught:
        server_context(cert, missing)
    assert str(caught.value) == (
        f"cannot load TLS certificate {cert} / key {missing}: No such file or directory"
    )


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> bytes:
    """An in-memory TLS handshake; the server certificate the client got (DER)."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    serv = server.wrap_bio(s_in, s_out, server_side=True)
    pending = {conn: True, serv: True}
    for _ in range(10):
        for side in (conn, serv):
            if pending[side]:
                try:
                    side.do_handshake()
                    pending[side] = False
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if not any(pending.values()):
            break
    cert = conn.getpeercert(binary_form=True)
    assert cert is not None
    return cert


def test_follow_current_presents_the_reloaded_certificate(tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    front = server_context(*tls_files(old_ca, tmp_path / "old"))
    renewed = server_context(*tls_files(new_ca, tmp_path / "new"))
    current: list[ssl.SSLContext | None] = [None]
    follow_current(front, lambda: current[0])
    trusts_old, trusts_new = client_tls(old_ca), client_tls(new_ca)
    old_der = handshake(front, trusts_old)  # nothing current yet: the front's own
    current[0] = renewed
    new_der = handshake(front, trusts_new)
    assert new_der != old_der
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(front, trusts_old)
    current[0] = front  # back to the front's own certificate
    assert handshake(front, trusts_old) == old_der


def test_self_signed_certificate_fields(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    cert_path, key_path = tmp_path / "a" / "cert.pem", tmp_path / "b" / "key.pem"
    started = datetime.datetime.now(datetime.UTC)
    assert generate_self_signed(cert_path, key_path, "mta.example.test", days=30)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mta.example.test")])
    assert cert.subject == name and cert.issuer == name
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    minute = datetime.timedelta(minutes=1)
    assert abs(cert.not_valid_before_utc - (started - 5 * minute)) < minute
    assert abs(cert.not_valid_after_utc - (started + datetime.timedelta(days=30))) < minute
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not usage.critical and list(usage.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "cert.pem", "key.pem"]


def test_self_signed_default_lifetime_and_regeneration_of_a_half_pair(tmp_path: Path) -> None:
    from cryptography import x509

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    started = datetime.datetime.now(datetime.UTC)
    assert generate_self_signed(cert, key, "mta.example.test")
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    lifetime = parsed.not_valid_after_utc - started
    assert abs(lifetime - datetime.timedelta(days=825)) < datetime.timedelta(minutes=1)
    key.unlink()  # only the certificate left: both are made afresh
    assert generate_self_signed(cert, key, "mta.example.test")
    assert key.exists() and cert.read_bytes() != b""
    server_context(cert, key)


def test_hardening_options_are_added_to_the_defaults(tmp_path: Path) -> None:
    defaults = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).options
    ctx = server_context(*tls_files(trustme.CA(), tmp_path))
    assert ctx.options & defaults == defaults  # e.g. no SSLv3, single-use DH keys


def test_self_signed_validity_is_right_whatever_the_host_time_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography import x509

    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9, no daylight saving
    time.tzset()
    try:
        started = datetime.datetime.now(datetime.UTC)
        cert = tmp_path / "cert.pem"
        assert generate_self_signed(cert, tmp_path / "key.pem", "mta.example.test")
    finally:
        monkeypatch.undo()
        time.tzset()
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    before = parsed.not_valid_before_utc - started
    assert datetime.timedelta(minutes=-6) < before < datetime.timedelta(minutes=-4)


def test_self_signed_creates_missing_directories(tmp_path: Path) -> None:
    cert, key = tmp_path / "etc" / "tls" / "cert.pem", tmp_path / "private" / "keys" / "key.pem"
    assert generate_self_signed(cert, key, "mta.example.test")
    server_context(cert, key)


def test_self_signed_key_is_private_from_its_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not made 0600 after the fact: no moment when another user could open it."""
    created: dict[str, int] = {}
    real_open = os.open

    def spy(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        fd = real_open(path, flags, *args)
        if flags & os.O_CREAT:
            created[Path(path).name] = stat.S_IMODE(os.fstat(fd).st_mode)
        return fd

    monkeypatch.setattr(os, "open", spy)
    old_umask = os.umask(0)
    try:
        assert generate_self_signed(tmp_path / "cert.pem", tmp_path / "key.pem", "mta.test")
    finally:
        os.umask(old_umask)
    assert created == {".key.pem.tmp": 0o600, ".cert.pem.tmp": 0o644}
