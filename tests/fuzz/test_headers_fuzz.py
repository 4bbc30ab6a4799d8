"""Fuzz the header helpers: header block split, field counting (the hop limit), removal
(X-Job, X-Virtual-MTA), lookup and the Received: trace field, against a plain model.

The model reads the header block line by line (lines end in CRLF only, as on the wire):
a field is a line that starts with its name, optional blanks and a colon, and runs on
over the lines that start with a blank. The helpers must agree with it on any bytes,
never touch the body, and never let client text break out of the Received: field.
"""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from outrider.message.headers import (
    count_fields,
    extract_and_remove_header,
    has_fields,
    header_value,
    received_header,
    split_header_block,
)
from tests.fuzz.harness import fuzz_target
from tests.fuzz.seeds import MESSAGE_SEEDS

NAMES = ["Received", "X-Job", "X-Virtual-MTA", "Message-ID", "Date"]
LOOKALIKES = ["received", "RECEIVED", "Received-SPF", "X-Received", "ReceivedX", "X-JOB"]
name_variants = st.sampled_from([*NAMES, *LOOKALIKES, "Subject", "", "From ", "x" * 70])
separators = st.sampled_from([b":", b": ", b" :", b"\t:", b"  :", b"", b" ", b"=", b"::"])
values = st.one_of(
    st.sampled_from([b"", b" value", b" a\r\n\tfolded", b" a\r\n b\r\n  c", b" \xff\xfe"]),
    st.binary(max_size=24),
)
endings = st.sampled_from([b"\r\n"] * 8 + [b"\n", b"\r", b""])
fields = st.tuples(name_variants.map(lambda n: n.encode("ascii")), separators, values, endings).map(
    b"".join
)
bodies = st.one_of(
    st.just(b""),
    st.lists(st.sampled_from([b"Received: x", b"X-Job: y", b"", b"body", b" cont"]))
    .map(lambda ls: b"".join(line + b"\r\n" for line in ls))
    .map(lambda body: b"\r\n" + body),
    st.binary(max_size=30),
)
messages = st.one_of(
    st.tuples(st.lists(fields, max_size=10).map(b"".join), bodies).map(b"".join),
    st.tuples(st.sampled_from(MESSAGE_SEEDS), st.integers(0, 4000)).map(
        lambda t: t[0][: t[1]]  # a seed message cut anywhere
    ),
)
names = st.sampled_from(NAMES)


def model_spans(headers: bytes, name: str) -> list[tuple[int, int]]:
    """(start, end) of each ``name`` field in a header block, by reading it line by line."""
    field_start = re.compile(re.escape(name.encode("ascii")) + rb"[ \t]*:", re.IGNORECASE)
    lines: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(headers):
        end = headers.find(b"\r\n", pos)
        end = len(headers) if end < 0 else end + 2
        lines.append((pos, headers[pos:end]))
        pos = end
    spans = []
    for i, (start, line) in enumerate(lines):
        if field_start.match(line):
            end = start + len(line)
            for _, more in lines[i + 1 :]:
                if more[:1] not in (b" ", b"\t"):
                    break
                end += len(more)
            spans.append((start, end))
    return spans


@given(messages, names)
@example(MESSAGE_SEEDS[0], "Received")
@example(b"Received: a\r\nX: b\r\n\r\nReceived: c\r\n", "Received")
@fuzz_target(weight=3.5)
def test_field_helpers_agree_with_a_line_by_line_model(message: bytes, name: str) -> None:
    headers, rest = split_header_block(message)
    assert headers + rest == message
    assert rest == b"" or rest.startswith(b"\r\n")
    assert b"\r\n\r\n" not in headers
    assert headers.endswith(b"\r\n") or not headers or not rest

    spans = model_spans(headers, name)
    count = count_fields(message, name)
    assert count == len(spans)
    for wanted in (0, 1, count, count + 1):
        assert has_fields(message, name, wanted) == (count >= wanted)

    value = header_value(message, name)
    stripped, removed = extract_and_remove_header(message, name)
    assert removed == value
    if not spans:
        assert value is None and stripped is message
        return
    assert value is not None and "\r\n" not in value
    starts = [0, *(end for _, end in spans)]
    ends = [*(start for start, _ in spans), len(headers)]
    kept = b"".join(headers[a:b] for a, b in zip(starts, ends, strict=True))
    assert stripped == kept + rest  # exactly the fields' lines are gone, the body untouched
    assert count_fields(stripped, name) == 0
    for other in NAMES:
        if other.lower() != name.lower():
            assert count_fields(stripped, other) == count_fields(message, other)


texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "client.test", "a\r\nX-Injected: 1", "(x) <y> ;z", "\u00e9.test", "\x00"]),
)


@given(
    texts,
    st.sampled_from(["192.0.2.1", "2001:db8::1", "", "::ffff:127.0.0.1"]),
    st.one_of(st.none(), texts),
    st.sampled_from(["ESMTP", "ESMTPS", "ESMTPSA", "SMTP", "UTF8SMTPS", "utf8smtp"]),
    st.one_of(st.none(), texts),
    st.floats(0, 4e9),
    messages,
)
@fuzz_target(weight=0.75)
def test_received_field_stays_one_field(
    helo: str,
    ip: str,
    rdns: str | None,
    protocol: str,
    recipient: str | None,
    now: float,
    message: bytes,
) -> None:
    trace = received_header(
        helo=helo,
        client_ip=ip,
        client_rdns=rdns if rdns is None or rdns.isprintable() else None,
        by_host="mx.test",
        protocol=protocol,
        queue_id="01JQUEUEID",
        recipient=recipient,
        now=now,
    )
    assert trace.startswith(b"Received: ") and trace.endswith(b"\r\n")
    lines = trace[:-2].split(b"\r\n")
    assert all(line.startswith(b"\t") for line in lines[1:])
    assert not any(b"\r" in line or b"\n" in line for line in lines)
    assert trace.isascii() or protocol.upper().startswith("UTF8")
    assert count_fields(trace + message, "Received") == count_fields(message, "Received") + 1
