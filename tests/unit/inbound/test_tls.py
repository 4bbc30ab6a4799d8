"""Server SSL contexts and the development certificate."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
import trustme

from outrider.inbound.tls import TlsError, generate_self_signed, server_context
from tests.support.inbound import tls_files


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
