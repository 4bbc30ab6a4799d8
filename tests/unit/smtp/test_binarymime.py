"""BODY=BINARYMIME relayed: kept only where the next hop offers BINARYMIME and CHUNKING.

A message received as binary MIME (RFC 3030) may hold NUL, bare CR or LF and lines over
998 octets; none of that survives DATA, and relabelling it BODY=8BITMIME would hand the
next hop a corrupted message. It is refused with 5.6.3 instead, unless its content is
valid 8-bit MIME after all.
"""

from __future__ import annotations

import pytest

from outrider.message.envelope import Envelope, Recipient
from outrider.smtp.client import (
    BINARY_UNSUPPORTED,
    SmtpClientConnection,
    State,
    StreamedContent,
    is_binary,
)

BINARY = b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\rbare CR\nbare LF\xff\r\n"


def ehlo(*extensions: str) -> bytes:
    lines = ["mx.test Hello", *extensions]
    out = [f"250-{line}\r\n" for line in lines[:-1]] + [f"250 {lines[-1]}\r\n"]
    return "".join(out).encode()


def ready(*extensions: str) -> SmtpClientConnection:
    conn = SmtpClientConnection("client.test")
    conn.receive_data(b"220 mx.test ESMTP\r\n")
    conn.data_to_send()
    conn.receive_data(ehlo(*extensions))
    assert conn.state is State.READY
    return conn


def binary_envelope() -> Envelope:
    return Envelope("Q1", "s@a.test", [], 0.0, body_8bit=True, body_binary=True)


@pytest.mark.parametrize(
    ("body", "binary"),
    [
        (b"plain\r\ntext\r\n", False),
        ("8-bit ünïcode\r\n".encode(), False),
        (b"nul\x00\r\n", True),
        (b"bare\rCR\r\n", True),
        (b"bare\nLF\r\n", True),
        (b"x" * 998 + b"\r\n", False),
        (b"x" * 999 + b"\r\n", True),
        (b"a\r\n" + b"y" * 1200, True),
    ],
)
def test_is_binary(body: bytes, binary: bool) -> None:
    assert is_binary(body) is binary


@pytest.mark.parametrize(
    "extensions",
    [("PIPELINING", "8BITMIME"), ("PIPELINING", "8BITMIME", "CHUNKING"), ("BINARYMIME",)],
)
def test_binary_content_is_refused_with_5_6_3_where_it_cannot_go(extensions: tuple[str]) -> None:
    conn = ready(*extensions)
    tx = conn.start_transaction(binary_envelope(), [Recipient("r@b.test")], BINARY)
    assert tx.done and tx.final_replies() == [BINARY_UNSUPPORTED]
    assert str(BINARY_UNSUPPORTED).startswith("554 5.6.3 ")
    assert b"".join(conn.data_to_send()) == b""  # nothing went on the wire


def test_binary_content_goes_as_binarymime_over_bdat() -> None:
    conn = ready("PIPELINING", "8BITMIME", "CHUNKING", "BINARYMIME")
    conn.start_transaction(binary_envelope(), [Recipient("r@b.test")], BINARY)
    wire = b"".join(conn.data_to_send())
    assert wire.startswith(b"MAIL FROM:<s@a.test> BODY=BINARYMIME\r\nRCPT TO:<r@b.test>\r\n")
    conn.receive_data(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n")
    wire = b"".join(conn.data_to_send())
    assert wire == f"BDAT {len(BINARY)} LAST\r\n".encode() + BINARY  # octets as received


def test_a_streamed_binary_body_keeps_its_label() -> None:
    conn = ready("PIPELINING", "8BITMIME")
    tx = conn.start_transaction(binary_envelope(), [Recipient("r@b.test")], StreamedContent(10))
    assert tx.final_replies() == [BINARY_UNSUPPORTED]


def test_binarymime_label_on_clean_content_is_sent_as_8bitmime() -> None:
    """The client said BINARYMIME but sent valid 8-bit lines: 8BITMIME is a true label."""
    conn = ready("PIPELINING", "8BITMIME")
    conn.start_transaction(binary_envelope(), [Recipient("r@b.test")], "héllo\r\n".encode())
    wire = b"".join(conn.data_to_send())
    assert wire.startswith(b"MAIL FROM:<s@a.test> BODY=8BITMIME\r\n")


def test_body_binary_survives_the_spool_and_other_envelopes_keep_their_bytes() -> None:
    from outrider.spool.codec import decode_envelope, encode_envelope

    assert decode_envelope(encode_envelope(binary_envelope())).body_binary
    plain = Envelope("Q1", "s@a.test", [], 0.0, body_8bit=True)
    assert b'"bin"' not in encode_envelope(plain)
    assert not decode_envelope(encode_envelope(plain)).body_binary
