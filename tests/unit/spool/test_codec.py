"""Envelope serialisation and spool-file framing."""

from __future__ import annotations

import dataclasses
import struct
import zlib

import pytest
from hypothesis import given

from outrider.message.envelope import Envelope, Notify, RcptStatus
from outrider.spool.codec import (
    PREFIX_SIZE,
    CodecError,
    UnsupportedFormatError,
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
from tests.support.envelope_strategies import envelopes
from tests.unit.spool.conftest import make_envelope

_envelope = envelopes(notice_state=False)


@given(_envelope)
def test_every_field_round_trips(env: Envelope) -> None:
    assert decode_envelope(encode_envelope(env)) == env


def test_smtputf8_addresses_and_notify_flags() -> None:
    env = make_envelope(3)
    env.sender = "Jörg@bücher.example"
    env.smtputf8 = True
    env.recipients[0].address = "用户@例子.广告"
    env.recipients[0].notify = Notify.NEVER
    env.recipients[1].notify = None
    env.recipients[2].notify = Notify.SUCCESS | Notify.DELAY
    env.extra = {"tenant": "ünï", "x": ""}
    data = encode_envelope(env)
    assert "用户@例子.广告".encode() in data  # stored as UTF-8, not \u escapes
    back = decode_envelope(data)
    assert back == env
    assert back.recipients[0].notify is Notify.NEVER
    assert back.recipients[1].notify is None


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'{"v": 99}', b'{"v": 1}', b"\xff\xfe", b'{"v":1,"r":[1]}'],
)
def test_garbage_envelope_is_a_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_envelope(data)


def test_prefix_and_body_checks() -> None:
    env_json = encode_envelope(make_envelope())
    body = b"Subject: hi\r\n\r\nbody\r\n"
    head = encode_prefix(env_json, body)
    prefix = decode_prefix(head)
    assert prefix.body_offset == len(head) == PREFIX_SIZE + len(env_json)
    assert prefix.tail_offset == len(head) + len(body)
    assert check_header(head, prefix) == env_json
    check_body(body, prefix)
    with pytest.raises(CodecError):
        check_body(body[:-1], prefix)
    with pytest.raises(CodecError):
        check_body(body.replace(b"hi", b"ho"), prefix)
    with pytest.raises(CodecError):
        decode_prefix(head[:10])
    with pytest.raises(CodecError):
        check_header(head[:-1], prefix)
    flipped = head[:-3] + bytes([head[-3] ^ 1]) + head[-2:]
    with pytest.raises(CodecError):
        check_header(flipped, decode_prefix(flipped))
    with pytest.raises(CodecError):
        decode_prefix(b"XXXX" + head[4:])
    with pytest.raises(UnsupportedFormatError):
        decode_prefix(head[:4] + b"\x09" + head[5:])


def test_records_replay_in_order_and_stop_at_a_torn_one() -> None:
    env = make_envelope(3)
    fresh = dataclasses.replace(env, recipients=[dataclasses.replace(r) for r in env.recipients])
    r0, r1, _ = env.recipients
    r0.attempts, r0.last_reply, r0.next_attempt = 1, "451 4.7.1 later", 1234.5
    first = encode_record([(0, r0)])
    r0.status, r0.attempts = RcptStatus.DELIVERED, 2
    r1.status, r1.last_mta = RcptStatus.BOUNCED, "mx.example.net"
    second = encode_record([(0, r0), (1, r1)])
    tail = first + second

    assert apply_records(fresh, tail) == len(tail)
    assert fresh == env

    for cut in (1, 8, len(second) - 1):
        again = decode_envelope(encode_envelope(make_envelope(3)))
        assert apply_records(again, first + second[:cut]) == len(first)
        assert again.recipients[0].status is RcptStatus.PENDING
        assert again.recipients[0].attempts == 1

    corrupt = first + second[:-1] + bytes([second[-1] ^ 0xFF])
    assert [end for end, _ in iter_records(corrupt)] == [len(first)]
    assert list(iter_records(b"\0" * 64)) == []  # zero-filled tail after a crash


def test_torn_first_record_leaves_no_valid_octet() -> None:
    """Recovery cuts the tail to the returned length: a torn *first* record must give 0,
    or a garbage octet stays in front of every later append and hides it."""
    env = make_envelope(2)
    r0 = env.recipients[0]
    r0.status, r0.attempts = RcptStatus.DELIVERED, 3
    first = encode_record([(0, r0)])
    for cut in range(1, len(first)):
        fresh = decode_envelope(encode_envelope(make_envelope(2)))
        assert apply_records(fresh, first[:cut]) == 0
        assert fresh.recipients[0].status is RcptStatus.PENDING
        assert fresh.recipients[0].attempts == 0
    assert apply_records(make_envelope(2), b"") == 0

    # What recovery then does: cut to the valid length and append the next record.
    fresh = decode_envelope(encode_envelope(make_envelope(2)))
    torn = first[: len(first) // 2]
    tail = torn[: apply_records(fresh, torn)] + first
    assert apply_records(fresh, tail) == len(first)
    assert fresh.recipients[0].status is RcptStatus.DELIVERED


def test_every_intact_record_is_yielded_with_its_end() -> None:
    env = make_envelope(1)
    one = encode_record([(0, env.recipients[0])])
    assert [end for end, _ in iter_records(one * 3)] == [len(one), 2 * len(one), 3 * len(one)]
    assert [end for end, _ in iter_records(one * 2 + one[:9])] == [len(one), 2 * len(one)]


def test_envelope_row_is_read_wherever_it_stands_in_the_record() -> None:
    """The envelope row reads its own two fields, and rows after it still apply."""
    env = make_envelope(1)
    rows = b'[["e",0,"SF"],[0,"delivered",2,0.0,"250 ok","mx.example.net"]]'
    head = struct.pack("<cI", b"S", len(rows))
    record = head + struct.pack("<I", zlib.crc32(rows, zlib.crc32(head))) + rows
    assert apply_records(env, record) == len(record)
    assert (env.delay_warned, env.notices) == (False, "SF")  # not warned, though notices owed
    assert env.recipients[0].status is RcptStatus.DELIVERED
    assert env.recipients[0].attempts == 2


def test_record_with_bad_index_is_an_error() -> None:
    env = make_envelope(1)
    with pytest.raises(CodecError):
        apply_records(env, encode_record([(5, env.recipients[0])]))


@pytest.mark.parametrize("index", [-1, -2])
def test_negative_index_is_refused_not_counted_from_the_end(index: int) -> None:
    env = make_envelope(2)
    update = dataclasses.replace(env.recipients[1], status=RcptStatus.DELIVERED, attempts=4)
    with pytest.raises(CodecError, match="bad status record"):
        apply_records(env, encode_record([(index, update)]))
    assert env.recipients[1].status is RcptStatus.PENDING
    assert env.recipients[1].attempts == 0


def test_notice_state_rides_in_the_record_and_old_rows_still_read() -> None:
    env = make_envelope(2)
    r0, r1 = env.recipients
    r0.status, r0.relayed_owed = RcptStatus.DELIVERED, True
    env.delay_warned, env.notices = True, "S"
    fresh = decode_envelope(encode_envelope(make_envelope(2)))
    fresh.queue_id = env.queue_id
    apply_records(fresh, encode_record([(0, r0)], env))
    assert fresh.recipients[0].relayed_owed and not fresh.recipients[1].relayed_owed
    assert (fresh.delay_warned, fresh.notices) == (True, "S")

    # A record written before relayed_owed and the envelope row existed: five fields.
    old = encode_record([(1, r1)])
    assert b',"S"' not in old
    legacy = b'[[1,"bounced",3,0.0,"550 5.1.1 no such user","mx.example.net"]]'
    framed = struct.pack("<cII", b"R", len(legacy), zlib.crc32(legacy)) + legacy
    again = decode_envelope(encode_envelope(make_envelope(2)))
    assert apply_records(again, framed) == len(framed)
    assert again.recipients[1].status is RcptStatus.BOUNCED
    assert not again.recipients[1].relayed_owed
    assert (again.delay_warned, again.notices) == (False, "")
