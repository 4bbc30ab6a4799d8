"""The typed submission metadata in the envelope, and envelopes written before it existed."""

from __future__ import annotations

import json

from outrider.message.envelope import Source
from outrider.spool.codec import decode_envelope, encode_envelope
from tests.unit.spool.conftest import make_envelope


def test_metadata_fields_round_trip_and_extra_keeps_any_key() -> None:
    env = make_envelope()
    env.source = Source.API
    env.auth_user = "alice"
    env.listener = "[::1]:587"
    env.vmta_request = "mta10"
    env.listener_vmta = "pool1"
    env.vmta = "mta10"
    env.extra = {"auth": "not the user", "tenant": "t1"}  # no longer special
    assert decode_envelope(encode_envelope(env)) == env


def _old_release(extra: dict[str, str]) -> bytes:
    """An envelope as the release before the typed fields wrote it."""
    doc = json.loads(encode_envelope(make_envelope()))
    for key in ("src", "au", "ls", "vr", "lv"):
        del doc[key]
    doc["x"] = extra
    return json.dumps(doc).encode()


def test_old_extra_keys_become_the_typed_fields() -> None:
    env = decode_envelope(
        _old_release(
            {"auth": "bob", "x-virtual-mta": "mta11", "listener-vmta": "pool2", "tenant": "t"}
        )
    )
    assert (env.source, env.auth_user, env.listener) == (Source.SMTP, "bob", "")
    assert (env.vmta_request, env.listener_vmta) == ("mta11", "pool2")
    assert env.extra == {"tenant": "t"}


def test_old_envelope_without_metadata() -> None:
    env = decode_envelope(_old_release({}))
    assert (env.auth_user, env.vmta_request, env.listener_vmta, env.extra) == ("", "", "", {})
