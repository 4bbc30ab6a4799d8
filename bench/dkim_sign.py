"""DKIM signing cost per message: Outrider's signer (on ``cryptography``) vs dkimpy.

Usage: python bench/dkim_sign.py [--messages 2000] [--rounds 3]

For RSA-2048 and Ed25519, and messages of 4 KiB and 100 KiB, prints the median over
``--rounds`` of the mean µs per message: Outrider's intake step (relaxed body hash,
header choice, signature; :class:`outrider.dkim.step.DkimSigner`) and ``dkim.sign``
from dkimpy with the same relaxed/relaxed canonicalisation and header list. dkimpy is
in the ``test`` extra. Every signature is checked once with dkimpy's verifier first.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import time
from collections.abc import Callable

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from outrider.dkim.keys import PrivateKey, generate_key, private_pem, txt_value
from outrider.dkim.select import SigningTable
from outrider.dkim.signer import DEFAULT_HEADERS, SigningKey
from outrider.dkim.step import DkimSigner

HEADERS = (
    b"From: News <news@example.com>\r\nTo: ann@example.org\r\nSubject: Spring offer\r\n"
    b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"List-Unsubscribe: <https://example.com/u/1>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n"
)


def message(size: int) -> bytes:
    line = b"Lorem ipsum dolor sit amet, consectetur  adipiscing elit, sed do eiusmod\r\n"
    return HEADERS + line * ((size - len(HEADERS)) // len(line))


def dkimpy_key(key: PrivateKey) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(raw)
    return private_pem(key)


def per_message(sign: Callable[[bytes], bytes], msg: bytes, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        sign(msg)
    return (time.perf_counter() - start) / count * 1e6


def bench(algorithm: str, args: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
    key = generate_key(algorithm)
    signer = DkimSigner(
        SigningTable.build([(SigningKey("example.com", "s1", algorithm, key), False)])
    )
    records = {b"s1._domainkey.example.com.": txt_value(key).encode()}
    private = dkimpy_key(key)
    include = [h.encode() for h in DEFAULT_HEADERS]

    def own(msg: bytes) -> bytes:
        out = loop.run_until_complete(signer.apply(msg, time.time()))
        assert isinstance(out, bytes)
        return out

    def theirs(msg: bytes) -> bytes:
        sig: bytes = dkim.sign(
            msg,
            b"s1",
            b"example.com",
            private,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
            signature_algorithm=algorithm.encode(),
        )
        return sig + msg

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    for size in (4 * 1024, 100 * 1024):
        msg = message(size)
        for sign in (own, theirs):
            assert dkim.verify(sign(msg), dnsfunc=dns)
        count = args.messages if size < 10_000 else max(args.messages // 4, 1)
        mine = statistics.median(per_message(own, msg, count) for _ in range(args.rounds))
        other = statistics.median(per_message(theirs, msg, count) for _ in range(args.rounds))
        print(f"{algorithm:<16}{size // 1024:>6}Ki{mine:>14.0f}{other:>12.0f}{other / mine:>7.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    print(f"{'algorithm':<16}{'size':>8}{'outrider µs':>14}{'dkimpy µs':>12}{'ratio':>8}")
    for algorithm in ("rsa-sha256", "ed25519-sha256"):
        bench(algorithm, args, loop)
    loop.close()


if __name__ == "__main__":
    main()
