"""DKIM test keys and an independent verifier: dkimpy, its DNS look-ups served from a dict."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import dkim

from outrider.dkim.keys import PrivateKey, generate_key, txt_value, write_private_key


def write_keys(directory: Path) -> dict[str, Path]:
    """An RSA-2048 and an Ed25519 key file: algorithm -> path."""
    out = {}
    for algorithm, name in (("rsa-sha256", "rsa.pem"), ("ed25519-sha256", "ed.pem")):
        path = directory / name
        write_private_key(path, generate_key(algorithm))
        out[algorithm] = path
    return out


class Dns:
    """The ``_domainkey`` TXT records dkimpy looks up."""

    def __init__(self) -> None:
        self.records: dict[bytes, bytes] = {}

    def publish(self, domain: str, selector: str, key: PrivateKey | str) -> None:
        text = key if isinstance(key, str) else txt_value(key)
        self.records[f"{selector}._domainkey.{domain}.".encode()] = text.encode()

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None:
        return self.records.get(name)


def verify_all(message: bytes, dns: Dns) -> list[tuple[bytes, bool]]:
    """(``a=`` tag, verified) for each DKIM-Signature of ``message``, top first."""
    checker = dkim.DKIM(message)
    count = message.split(b"\r\n\r\n", 1)[0].lower().count(b"dkim-signature:")
    results = []
    for index in range(count):
        try:
            ok = bool(checker.verify(idx=index, dnsfunc=dns))
        except dkim.ValidationError:  # a body hash mismatch is raised, not returned
            ok = False
        results.append((checker.signature_fields.get(b"a", b""), ok))
    return results


def signature_tags(message: bytes) -> list[dict[bytes, bytes]]:
    """The tags of each DKIM-Signature, top first."""
    head = message.split(b"\r\n\r\n", 1)[0]
    out = []
    for field in _fields(head.split(b"\r\n")):
        name, _, value = field.partition(b":")
        if name.strip().lower() == b"dkim-signature":
            out.append(dkim.util.parse_tag_value(value.replace(b"\r\n", b"")))
    return out


def _fields(lines: Iterable[bytes]) -> list[bytes]:
    fields: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields
