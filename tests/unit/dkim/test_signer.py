"""The signer, checked by an independent verifier (dkimpy), and the choice of keys."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from outrider.dkim.canon import relaxed_body_hash
from outrider.dkim.keys import load_private_key
from outrider.dkim.select import SigningTable, existing_signatures, from_domain, keys_to_sign
from outrider.dkim.signer import SigningKey, chosen_headers, header_fields
from outrider.dkim.step import DkimSigner, hash_spilled_tail
from outrider.spool.spill import SpillFile
from tests.support.dkim_keys import Dns, signature_tags, verify_all

MESSAGE = (
    b"Received: from x by y; Thu, 1 Jan 2026 00:00:00 +0000\r\n"
    b"From: News <news@Example.com>\r\n"
    b"To: ann@example.org\r\n"
    b"Subject:  Hello\r\n   there \r\n"
    b"Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"List-Unsubscribe: <https://example.com/u/1>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"\r\n"
    b"Hi  there \t\r\n\r\nbye\r\n\r\n\r\n"
)


def keys(key_files: dict[str, Path], domain: str = "example.com") -> list[SigningKey]:
    return [
        SigningKey(
            domain, "rsa1", "rsa-sha256", load_private_key(key_files["rsa-sha256"], "rsa-sha256")
        ),
        SigningKey(
            domain,
            "ed1",
            "ed25519-sha256",
            load_private_key(key_files["ed25519-sha256"], "ed25519-sha256"),
        ),
    ]


def dns_for(signing: list[SigningKey]) -> Dns:
    dns = Dns()
    for key in signing:
        dns.publish(key.domain, key.selector, key.key)
    return dns


async def test_rsa_and_ed25519_signatures_verify(key_files: dict[str, Path]) -> None:
    signing = keys(key_files)
    signer = DkimSigner(SigningTable.build((k, False) for k in signing))
    signed = await signer.apply(MESSAGE, 1767225600.5)
    assert isinstance(signed, bytes) and signed.endswith(MESSAGE)
    assert verify_all(signed, dns_for(signing)) == [
        (b"rsa-sha256", True),
        (b"ed25519-sha256", True),
    ]
    tags = signature_tags(signed)[0]
    assert tags[b"d"] == b"example.com" and tags[b"t"] == b"1767225600"
    assert tags[b"c"] == b"relaxed/relaxed" and b"l" not in tags
    names = tags[b"h"].replace(b" ", b"").replace(b"\t", b"").split(b":")
    assert names.count(b"from") == 2 and names.count(b"subject") == 2  # over-signed
    assert names.count(b"list-unsubscribe") == 2 and names.count(b"to") == 1
    assert b"received" not in names


async def test_an_added_from_or_changed_body_breaks_the_signature(
    key_files: dict[str, Path],
) -> None:
    signing = keys(key_files)
    dns = dns_for(signing)
    signed = await DkimSigner(SigningTable.build((k, False) for k in signing)).apply(MESSAGE, 1)
    assert isinstance(signed, bytes)
    head, body = signed.split(b"\r\n\r\n", 1)
    added = head + b"\r\nFrom: evil@attacker.test\r\n\r\n" + body
    assert [ok for _, ok in verify_all(added, dns)] == [False, False]
    changed = head + b"\r\n\r\n" + body.replace(b"bye", b"BYE")
    assert [ok for _, ok in verify_all(changed, dns)] == [False, False]


def test_headers_are_chosen_bottom_up_and_absent_ones_skipped() -> None:
    fields = header_fields(b"To: a\r\nFrom: x\r\nTo: b\r\n c\r\n")
    listed, signed = chosen_headers(fields, ("from", "to", "cc", "subject"))
    assert listed == ["from", "from", "to", "to", "subject"]
    assert signed == [b"From: x\r\n", b"To: b\r\n c\r\n", b"To: a\r\n"]


def test_from_domain() -> None:
    assert from_domain('"A, B" <x@News.Example.COM.>') == "news.example.com"
    assert from_domain("x@bücher.example") == "xn--bcher-kva.example"
    assert from_domain("undisclosed") is None
    assert from_domain(None) is None


def test_subdomains_sign_with_the_parent_only_when_asked(key_files: dict[str, Path]) -> None:
    parent = keys(key_files, "example.com")
    other = keys(key_files, "other.test")
    table = SigningTable.build([*((k, True) for k in parent), *((k, False) for k in other)])
    assert table.keys_for("example.com") == tuple(parent)
    assert table.keys_for("news.example.com") == tuple(parent)
    assert table.keys_for("a.b.example.com") == tuple(parent)
    assert table.keys_for("news.other.test") == ()
    assert table.keys_for("com") == ()
    own = SigningKey("news.example.com", "n1", "rsa-sha256", parent[0].key)
    table = SigningTable.build([*((k, True) for k in parent), (own, False)])
    assert table.keys_for("news.example.com") == (own,)  # its own key wins


async def test_a_subdomain_signed_by_its_parent_verifies(key_files: dict[str, Path]) -> None:
    parent = keys(key_files, "example.com")
    signer = DkimSigner(SigningTable.build((k, True) for k in parent))
    message = MESSAGE.replace(b"news@Example.com", b"news@news.example.com")
    signed = await signer.apply(message, 1)
    assert isinstance(signed, bytes)
    assert [ok for _, ok in verify_all(signed, dns_for(parent))] == [True, True]
    assert [t[b"d"] for t in signature_tags(signed)] == [b"example.com"] * 2


async def test_never_signed_twice_with_the_same_d_and_s(key_files: dict[str, Path]) -> None:
    signing = keys(key_files)
    signer = DkimSigner(SigningTable.build((k, False) for k in signing))
    once = await signer.apply(MESSAGE, 1)
    assert isinstance(once, bytes)
    assert existing_signatures(header_fields(once.split(b"\r\n\r\n")[0] + b"\r\n")) == {
        ("example.com", "rsa1"),
        ("example.com", "ed1"),
    }
    assert await signer.apply(once, 2) is once
    # a third key of the domain still signs
    third = SigningKey("example.com", "new", "rsa-sha256", signing[0].key)
    signer = DkimSigner(SigningTable.build((k, False) for k in (*signing, third)))
    twice = await signer.apply(once, 2)
    assert isinstance(twice, bytes) and len(signature_tags(twice)) == 3


async def test_unsigned_domains_and_missing_from_are_left_alone(
    key_files: dict[str, Path],
) -> None:
    signer = DkimSigner(SigningTable.build((k, False) for k in keys(key_files)))
    other = MESSAGE.replace(b"news@Example.com", b"news@elsewhere.test")
    assert await signer.apply(other, 1) is other
    no_from = b"Subject: x\r\n\r\nbody\r\n"
    assert await signer.apply(no_from, 1) is no_from
    assert keys_to_sign(signer.table, None, []) == []


async def test_spilled_tail_is_hashed_in_chunks(tmp_path: Path) -> None:
    body = b"line  \r\n" * 100_000 + b"\r\n\r\n"
    tail = SpillFile(str(tmp_path), head_len=100)
    for i in range(0, len(body) + 2, 65536):
        await tail.write((b"\r\n" + body)[i : i + 65536])
    digest = await asyncio.get_running_loop().run_in_executor(None, hash_spilled_tail, tail)
    assert digest == relaxed_body_hash(body)
    tail.discard()


def test_wrong_key_for_the_algorithm_is_refused(key_files: dict[str, Path]) -> None:
    from outrider.dkim.keys import DkimKeyError

    with pytest.raises(DkimKeyError, match="needs an Ed25519 key, got an RSA key"):
        load_private_key(key_files["rsa-sha256"], "ed25519-sha256")
    with pytest.raises(DkimKeyError, match="needs an RSA key"):
        load_private_key(key_files["ed25519-sha256"], "rsa-sha256")


async def test_the_notice_intake_replaces_its_own_stale_signatures(
    key_files: dict[str, Path],
) -> None:
    """A list copy changes List-Unsubscribe: the post's signatures of ours are made afresh,
    a third party's is kept."""
    signing = keys(key_files)
    table = SigningTable.build((k, False) for k in signing)
    foreign = b"DKIM-Signature: v=1; d=other.test; s=x; b=abc\r\n"
    once = await DkimSigner(table).apply(foreign + MESSAGE, 1)
    assert isinstance(once, bytes)
    copy = once.replace(b"<https://example.com/u/1>", b"<mailto:list-request@example.com>")
    dns = dns_for(signing)
    assert [ok for _, ok in verify_all(copy, dns)[:2]] == [False, False]
    fresh = await DkimSigner(table, resign=True).apply(copy, 2)
    assert isinstance(fresh, bytes)
    assert [(t[b"s"], t.get(b"t")) for t in signature_tags(fresh)] == [
        (b"rsa1", b"2"),
        (b"ed1", b"2"),
        (b"x", None),
    ]
    assert [ok for _, ok in verify_all(fresh, dns)[:2]] == [True, True]
    assert fresh.endswith(
        MESSAGE.replace(b"<https://example.com/u/1>", b"<mailto:list-request@example.com>")
    )
