"""The packed in-memory form of a waiting message's envelope."""

from __future__ import annotations

import dataclasses
import marshal
import sys

import pytest
from hypothesis import given

from outrider.message import packed
from outrider.message.envelope import (
    Envelope,
    Recipient,
)
from outrider.message.packed import dump, job_id, load, pack, queue_id_of, unpack
from tests.support.envelope_strategies import envelopes


def typical() -> Envelope:
    """A deferred single-recipient message as a bulk sender queues them."""
    return Envelope(
        queue_id="4Zk2mQ7xH9pLr3Ta",
        sender="bounces@sender.example.com",
        recipients=[
            Recipient(
                "user123456@domain0517.test",
                attempts=1,
                next_attempt=1764780000.125,
                last_reply="451 4.7.1 Try again later",
                last_mta="mx.domain0517.test",
            )
        ],
        received_at=1764779000.5,
        size=4321,
        msg_id="<1764779000.123456.98765@injector.example.com>",
        client_address="127.0.0.1",
        helo="client.test",
        job_id="newsletter-12",
        vmta="default",
        listener="127.0.0.1:2525",
    )


@given(envelopes())
def test_every_field_round_trips(env: Envelope) -> None:
    back = unpack(pack(env))
    assert back == env
    assert back.recipients is not env.recipients  # a copy: the packed form is independent
    assert job_id(pack(env)) == env.job_id


@given(envelopes())
def test_the_portable_form_round_trips_with_every_string_in_full(env: Envelope) -> None:
    data = dump(env)
    assert load(data) == env
    assert queue_id_of(data) == env.queue_id
    assert env.sender.encode("utf-8", "surrogatepass") in data  # in full, not a code


def test_the_portable_form_needs_no_table(monkeypatch: pytest.MonkeyPatch) -> None:
    data = dump(typical())
    monkeypatch.setattr(packed, "_strings", [])  # another process: no codes known
    assert load(data) == typical()


@pytest.mark.parametrize("data", [b"", b"\xff", marshal.dumps((1, 2)), marshal.dumps(("Q", 1))])
def test_what_is_no_dumped_envelope_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        load(data)


def test_flags_are_independent() -> None:
    names = ("smtputf8", "body_8bit", "body_binary", "delay_warned")
    for name in names:
        env = dataclasses.replace(typical(), **{name: True})
        back = unpack(pack(env))
        assert {n: getattr(back, n) for n in names} == {n: n == name for n in names}


def test_a_packed_typical_message_is_a_third_of_its_objects() -> None:
    env = typical()
    data = pack(env)
    rcpt = env.recipients[0]
    objects = (
        sys.getsizeof(env)
        + sys.getsizeof(env.recipients)
        + sys.getsizeof(rcpt)
        + sys.getsizeof(rcpt.address)
        + sys.getsizeof(env.msg_id)
        + sys.getsizeof(env.received_at)
        + sys.getsizeof(env.size)
        + sys.getsizeof(rcpt.next_attempt)
    )
    assert sys.getsizeof(data) < 260 < objects / 2


def test_repeated_strings_are_stored_once_as_codes() -> None:
    one, two = typical(), typical()
    two.sender = "other-bounces@sender.example.com"
    # only the sender differs: the packed forms differ by its code, not by its text
    assert len(pack(one)) == len(pack(two))
    assert b"sender.example.com" not in pack(one)
    assert b"Try again later" not in pack(one)
    assert b"user123456@domain0517.test" in pack(one)  # each message's own: in full


def test_past_the_table_limit_strings_are_stored_in_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(packed, "_codes", {})
    monkeypatch.setattr(packed, "_strings", [])
    monkeypatch.setattr(packed, "LIMIT", 3)
    env = typical()
    data = pack(env)  # sender, client address and HELO take the three codes
    assert packed._strings == [env.sender, env.client_address, env.helo]
    assert b"newsletter-12" in data and b"Try again later" in data
    assert unpack(data) == env
    assert job_id(data) == "newsletter-12"
    env.sender = "verp-1234@sender.example.com"
    assert b"verp-1234@sender.example.com" in pack(env)
    assert len(packed._strings) == 3  # the table never grows past its limit


def test_strings_come_back_shared() -> None:
    a, b = unpack(pack(typical())), unpack(pack(typical()))
    assert a.sender is b.sender
    assert a.recipients[0].last_reply is b.recipients[0].last_reply


def test_a_string_seen_before_keeps_its_code() -> None:
    pack(typical())
    size = len(packed._strings)
    again = typical()
    assert pack(again) == pack(typical())  # the same codes every time
    assert len(packed._strings) == size  # and the table did not grow


def test_a_dumped_envelope_of_the_wrong_shape_is_refused() -> None:
    env = typical()
    env.extra = {"k": "v"}
    fields = marshal.loads(dump(env))
    odd_extra = (*fields[:17], ("k",), *fields[18:])
    with pytest.raises(ValueError):
        load(marshal.dumps(odd_extra))  # a key without its value
    with pytest.raises(ValueError):
        load(marshal.dumps(list(fields)))  # a list is not what dump writes
    assert load(marshal.dumps(fields)) == env


@pytest.mark.parametrize(
    "data",
    [marshal.dumps(()), marshal.dumps((1, "Q")), marshal.dumps(["Q", 1]), marshal.dumps("Q")],
)
def test_queue_id_of_what_is_no_envelope_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        queue_id_of(data)


def test_queue_id_of_a_packed_envelope() -> None:
    assert queue_id_of(pack(typical())) == typical().queue_id
