"""Spool codec cost on the message hot path: microseconds per call (best of 5 timeit runs).

    .venv/bin/python bench/codec_speed.py

Times the envelope encode/decode (once per message) and the tail record encode/replay
(once per delivery attempt, and on recovery) for a 3-recipient message.
"""

from __future__ import annotations

import timeit

from outrider.message.envelope import Envelope, Notify, Recipient, Ret
from outrider.spool.codec import apply_records, decode_envelope, encode_envelope, encode_record


def _envelope() -> Envelope:
    return Envelope(
        queue_id="1A2B3C4D5E6F",
        sender="sender@example.org",
        recipients=[
            Recipient(
                address=f"user{i}@example.net",
                orcpt=f"rfc822;user{i}@example.net",
                notify=Notify.SUCCESS | Notify.FAILURE,
            )
            for i in range(3)
        ],
        received_at=1_700_000_000.0,
        size=4096,
        ret=Ret.HDRS,
    )


def main() -> None:
    env = _envelope()
    env.recipients[0].attempts = 1
    env.recipients[0].last_reply = "451 4.7.1 try again later"
    data = encode_envelope(env)
    record = encode_record([(0, env.recipients[0]), (1, env.recipients[1])], env)
    tail = record * 4
    target = decode_envelope(data)
    cases = {
        "encode_envelope": lambda: encode_envelope(env),
        "decode_envelope": lambda: decode_envelope(data),
        "encode_record": lambda: encode_record([(0, env.recipients[0])], env),
        "apply_records (4 records)": lambda: apply_records(target, tail),
    }
    for name, fn in cases.items():
        number = 20_000
        best = min(timeit.repeat(fn, number=number, repeat=5)) / number
        print(f"{name:28} {best * 1e6:7.2f} us")


if __name__ == "__main__":
    main()
