"""Relaxed canonicalisation: RFC 6376 3.4.5's example, and chunked hashing."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from outrider.dkim.canon import RelaxedBodyHash, relaxed_body_hash, relaxed_header


def test_rfc6376_header_example() -> None:
    assert relaxed_header(b"A: X\r\n") == b"a:X\r\n"
    assert relaxed_header(b"B : Y\t\r\n\tZ  \r\n") == b"b:Y Z\r\n"


def test_rfc6376_body_example() -> None:
    body = b" C \r\nD \t E\r\n\r\n\r\n"
    assert relaxed_body_hash(body) == hashlib.sha256(b" C\r\nD E\r\n").digest()


def test_empty_body_and_only_empty_lines_hash_as_nothing() -> None:
    empty = hashlib.sha256(b"").digest()
    assert relaxed_body_hash(b"") == empty
    assert relaxed_body_hash(b"\r\n\r\n  \r\n") == empty


def test_a_last_line_without_crlf_gets_one() -> None:
    assert relaxed_body_hash(b"abc  ") == hashlib.sha256(b"abc\r\n").digest()
    assert relaxed_body_hash(b"a\r\n\r\nb") == hashlib.sha256(b"a\r\n\r\nb\r\n").digest()


def test_empty_lines_inside_the_body_are_kept() -> None:
    body = b"a\r\n\r\n\r\nb\r\n\r\n"
    assert relaxed_body_hash(body) == hashlib.sha256(b"a\r\n\r\n\r\nb\r\n").digest()


def reference(body: bytes) -> bytes:
    """A line-by-line reading of RFC 6376 3.4.4."""
    lines = body.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    import re

    canon = [re.sub(rb"[ \t]+", b" ", line).rstrip(b" ") for line in lines]
    while canon and canon[-1] == b"":
        canon.pop()
    return hashlib.sha256(b"".join(line + b"\r\n" for line in canon)).digest()


@given(
    st.lists(st.sampled_from([b"a", b" ", b"\t", b"\r\n", b"bc", b"  \r\n"]), max_size=40),
    st.lists(st.integers(1, 7), min_size=1, max_size=20),
)
def test_chunked_hash_matches_the_reference(parts: list[bytes], cuts: list[int]) -> None:
    body = b"".join(parts)
    hasher = RelaxedBodyHash()
    pos = 0
    for size in cuts * 10:
        if pos >= len(body):
            break
        hasher.update(body[pos : pos + size])
        pos += size
    hasher.update(body[pos:])
    assert hasher.digest() == reference(body)
