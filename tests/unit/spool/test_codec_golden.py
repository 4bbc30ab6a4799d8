"""Golden bytes: the on-disk spool format, pinned. A change here is a format change: bump
the version (or add a record tag), keep reading the old bytes, and update these deliberately.
"""

from __future__ import annotations

import struct
import zlib

import pytest

from outrider.message.envelope import Envelope, Notify, RcptStatus, Recipient, Ret, Source
from outrider.spool.codec import (
    PREFIX_SIZE,
    apply_records,
    check_body,
    check_header,
    decode_envelope,
    decode_prefix,
    encode_envelope,
    encode_prefix,
    encode_record,
    iter_records,
)

BODY = b"Subject: x\r\n"

# magic "ORSP", version 1, env_len 416, body_len 12, body_crc, prefix_crc (little-endian)
GOLDEN_FIXED = bytes.fromhex("4f52535001a00100000c000000000000008779c655182c781a")
GOLDEN_ENVELOPE = (
    b'{"v":1,"q":"0ABCDEFGHJK1","s":"sender@example.org","t":1700000000.5,"z":12,'
    b'"ret":"HDRS","env":"env-1","u8":false,"b8":true,"ip":"192.0.2.1",'
    b'"helo":"client.example.org","job":"job7","mid":"<m1@example.org>","vmta":"pool-a",'
    b'"src":"smtp","au":"alice","ls":"mx","vr":"vr","lv":"lv","x":{"k":"v"},'
    b'"r":[["a@example.net","rfc822;a@example.net","SF","pending",0,0.0,"",""],'
    b'["b@example.net",null,null,"pending",0,0.0,"",""]]}'
)
# tag "S", payload length, CRC-32 of tag + length + payload; then the JSON payload
GOLDEN_RECORD_1 = bytes.fromhex("5341000000fb5b4fc7") + (
    b'[[0,"pending",1,1700000300.0,"451 4.7.1 later","mx.example.net"]]'
)
GOLDEN_RECORD_2 = bytes.fromhex("532b0000007e4c9951") + (
    b'[[1,"delivered",0,0.0,"","",1],["e",1,"S"]]'
)


def golden_envelope() -> Envelope:
    return Envelope(
        queue_id="0ABCDEFGHJK1",
        sender="sender@example.org",
        recipients=[
            Recipient(
                address="a@example.net",
                orcpt="rfc822;a@example.net",
                notify=Notify.SUCCESS | Notify.FAILURE,
            ),
            Recipient(address="b@example.net", orcpt=None, notify=None),
        ],
        received_at=1700000000.5,
        size=12,
        ret=Ret.HDRS,
        envid="env-1",
        smtputf8=False,
        body_8bit=True,
        client_address="192.0.2.1",
        helo="client.example.org",
        job_id="job7",
        msg_id="<m1@example.org>",
        vmta="pool-a",
        source=Source.SMTP,
        auth_user="alice",
        listener="mx",
        vmta_request="vr",
        listener_vmta="lv",
        extra={"k": "v"},
    )


def _after_records(env: Envelope) -> tuple[Envelope, bytes, bytes]:
    r0, r1 = env.recipients
    r0.attempts, r0.next_attempt = 1, 1700000300.0
    r0.last_reply, r0.last_mta = "451 4.7.1 later", "mx.example.net"
    first = encode_record([(0, r0)])
    r1.status, r1.relayed_owed = RcptStatus.DELIVERED, True
    env.delay_warned, env.notices = True, "S"
    second = encode_record([(1, r1)], env)
    return env, first, second


def test_envelope_and_prefix_encode_to_the_pinned_bytes() -> None:
    envelope_json = encode_envelope(golden_envelope())
    assert envelope_json == GOLDEN_ENVELOPE
    assert encode_prefix(envelope_json, BODY) == GOLDEN_FIXED + GOLDEN_ENVELOPE
    assert len(GOLDEN_FIXED) == PREFIX_SIZE


def test_tail_records_encode_to_the_pinned_bytes() -> None:
    _, first, second = _after_records(golden_envelope())
    assert first == GOLDEN_RECORD_1
    assert second == GOLDEN_RECORD_2
    tag, length, crc = struct.unpack_from("<cII", first)
    assert (tag, length) == (b"S", len(first) - 9)
    assert crc == zlib.crc32(first[9:], zlib.crc32(first[:5]))  # the tag is covered


def test_pinned_file_reads_back_to_the_same_envelope() -> None:
    data = GOLDEN_FIXED + GOLDEN_ENVELOPE + BODY + GOLDEN_RECORD_1 + GOLDEN_RECORD_2
    prefix = decode_prefix(data)
    assert (prefix.version, prefix.env_len, prefix.body_len) == (1, len(GOLDEN_ENVELOPE), 12)
    env = decode_envelope(check_header(data, prefix))
    check_body(data[prefix.body_offset : prefix.tail_offset], prefix)
    assert env == golden_envelope()
    tail = data[prefix.tail_offset :]
    assert apply_records(env, tail) == len(tail)
    expected, _, _ = _after_records(golden_envelope())
    assert env == expected
    assert (env.delay_warned, env.notices) == (True, "S")


def test_records_of_older_releases_still_read() -> None:
    """Tag "R": the CRC covers the payload only (spool files written before issue 15)."""
    payload = b'[[0,"pending",1,1700000300.0,"451 4.7.1 later","mx.example.net"]]'
    old = bytes.fromhex("5241000000") + struct.pack("<I", zlib.crc32(payload)) + payload
    assert old[5:9] == bytes.fromhex("de3bd543")  # pinned as well
    # a file upgraded in place: old records first, new ones appended after
    env = golden_envelope()
    _, _, second = _after_records(golden_envelope())
    assert apply_records(env, old + second) == len(old) + len(second)
    expected, _, _ = _after_records(golden_envelope())
    assert env == expected


@pytest.mark.parametrize("tag", sorted(set(range(256)) - {ord("S")}))
def test_a_new_record_with_any_other_tag_byte_is_refused(tag: int) -> None:
    record = bytes([tag]) + GOLDEN_RECORD_1[1:]
    assert list(iter_records(record)) == []
    env = golden_envelope()
    assert apply_records(env, record + GOLDEN_RECORD_2) == 0
    assert env == golden_envelope()


def test_an_old_record_relabelled_as_new_is_refused() -> None:
    payload = b'[[0,"delivered",1,0.0,"",""]]'
    old = struct.pack("<cII", b"R", len(payload), zlib.crc32(payload)) + payload
    assert len(list(iter_records(old))) == 1
    assert list(iter_records(b"S" + old[1:])) == []


@pytest.mark.parametrize("offset", range(1, 5))
def test_a_damaged_length_byte_is_refused(offset: int) -> None:
    damaged = bytearray(GOLDEN_RECORD_1 + GOLDEN_RECORD_1)
    damaged[offset] ^= 0x01
    assert [end for end, _ in iter_records(bytes(damaged))] == []
