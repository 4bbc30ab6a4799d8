"""Hypothesis strategies for what an SMTP client may send: commands, bodies, chunks, noise.

Shared by the sans-I/O server fuzz targets and the daemon fuzz test. The pieces are
biased towards what reaches deep states (EHLO, a valid MAIL and RCPT, DATA with a
terminator, BDAT with the right size, AUTH and STARTTLS) and mixed with near misses
(bad case, bad parameters, bare CR or LF, wrong chunk sizes, over-long lines) and noise.
"""

from __future__ import annotations

import itertools
import re

from hypothesis import strategies as st

REPLY_LINES = re.compile(rb"(?:[2-5][0-9]{2}(?:[ -][^\r\n]*)?\r\n)*")  # what a server may write

ADDRESSES = [
    b"<a@b.test>",
    b"<>",
    b"<Postmaster>",
    b"<postmaster@mx.test>",
    b"<\xc3\xa9t\xc3\xa9@b\xc3\xbccher.test>",
    b"<@r1.test,@r2.test:u@d.test>",
    b"<u@[127.0.0.1]>",
    b"<u@[IPv6:::1]>",
    b"<u@[IPv6:fe80::1%eth0]>",
    b"<u@[300.1.1.1]>",
    b'<"q s"@d.test>',
    b"<u@d.test.>",
    b"<u%v!w@d.test>",
    b"u@d.test",
    b"<u@>",
    b"<a@b.test",
    b" <a@b.test>",
    b"<a\x00b@c.test>",
]
MAIL_PARAMS = [
    b"SIZE=100",
    b"SIZE=99999999999999999999999",
    b"SIZE=",
    b"SIZE",
    b"BODY=8BITMIME",
    b"BODY=BINARYMIME",
    b"BODY=7bit",
    b"BODY=9BIT",
    b"SMTPUTF8",
    b"SMTPUTF8=yes",
    b"RET=FULL",
    b"RET=HDRS",
    b"RET=ALL",
    b"ENVID=id+2B1",
    b"ENVID=+0D+0Ax",
    b"ENVID=+ZZ",
    b"AUTH=<>",
    b"AUTH=u+40d.test",
    b"X-UNKNOWN=1",
    b"=x",
]
RCPT_PARAMS = [
    b"NOTIFY=NEVER",
    b"NOTIFY=SUCCESS,FAILURE,DELAY",
    b"NOTIFY=NEVER,SUCCESS",
    b"NOTIFY=",
    b"ORCPT=rfc822;a+40b.test",
    b"ORCPT=utf-8;\\x{E9}@d.test",
    b"ORCPT=rfc822",
    b"ORCPT=rfc822;+0D+0A",
    b"X-UNKNOWN",
]
SIMPLE = [
    b"DATA",
    b"DATA x",
    b"RSET",
    b"RSET x",
    b"NOOP",
    b"NOOP x",
    b"QUIT",
    b"VRFY user",
    b"VRFY",
    b"EXPN list",
    b"HELP",
    b"STARTTLS",
    b"starttls",
    b"STARTTLS x",
    b"STARTTLSX",
    b"AUTH PLAIN",
    b"AUTH PLAIN AHVzZXIAcGFzcw==",
    b"AUTH PLAIN =",
    b"AUTH LOGIN dXNlcg==",
    b"AUTH SCRAM-SHA-256",
    b"AUTH CRAM-MD5",
    b"AUTH PLAIN !!",
    b"AUTH PLAIN a b",
    b"AUTH",
    b"*",
    b"dXNlcg==",
    b"=",
    b"!!not base64!!",
    b"BDAT",
    b"BDAT x",
    b"BDAT 99999999999999999999",
    b"BDAT 0 LAST",
    b"BDAT 3",
    b"",
    b" ",
    b"MAIL",
    b"RCPT",
    b"XYZZ",
]
HELLO_ARGS = [
    b" client.test",
    b"",
    b" ",
    b" [127.0.0.1]",
    b" \xff\xfe",
    b" a\x01b",
    b" \xc3\xa9.test",
]
TERMINATORS = [b"\r\n"] * 6 + [b"\n", b"\r", b"", b"\r\r\n", b"\n\r"]


def _join(parts: tuple[bytes, ...]) -> bytes:
    return b"".join(parts)


def _params(options: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(options), max_size=3).map(
        lambda ps: b"".join(b" " + p for p in ps)
    )


hello_lines = st.tuples(
    st.sampled_from([b"EHLO", b"HELO", b"ehlo", b"Helo"]), st.sampled_from(HELLO_ARGS)
).map(_join)
mail_lines = st.tuples(
    st.sampled_from([b"MAIL FROM:", b"mail from:", b"MAIL FROM: ", b"MAIL TO:", b"MAIL FROM"]),
    st.sampled_from(ADDRESSES),
    _params(MAIL_PARAMS),
).map(_join)
rcpt_lines = st.tuples(
    st.sampled_from([b"RCPT TO:", b"rcpt to:", b"RCPT TO: ", b"RCPT FROM:"]),
    st.sampled_from(ADDRESSES),
    _params(RCPT_PARAMS),
).map(_join)
noise = st.binary(max_size=24)
command_lines = st.one_of(
    hello_lines,
    mail_lines,
    rcpt_lines,
    st.sampled_from(SIMPLE),
    noise,
    st.lists(st.sampled_from(SIMPLE) | noise, min_size=2, max_size=4).map(b" ".join),
)
commands = st.tuples(command_lines, st.sampled_from(TERMINATORS)).map(_join)

BODY_LINES = [b"", b".", b"..", b".x", b". ", b"Subject: x", b"\x00", b"\xff\xfe", b"a\rb", b"a\nb"]
body_lines = st.one_of(
    st.sampled_from(BODY_LINES),
    st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)
data_bodies = st.tuples(
    st.just(b"DATA\r\n"),
    st.lists(body_lines, max_size=12).map(lambda ls: b"".join(line + b"\r\n" for line in ls)),
    st.sampled_from([b".\r\n"] * 4 + [b"", b".\n", b"\n.\n", b".\r"]),
).map(_join)


@st.composite
def bdat_chunks(draw: st.DrawFn) -> bytes:
    payload = draw(st.binary(max_size=60))
    size = draw(
        st.sampled_from([len(payload)] * 4 + [0, len(payload) + 1, max(len(payload) - 1, 0)])
    )
    last = draw(st.sampled_from([b"", b" LAST", b" last", b" LAST ", b"  LAST"]))
    return b"BDAT %d%s\r\n%s" % (size, last, payload)


long_lines = st.tuples(
    st.sampled_from([b"", b"MAIL FROM:<", b"NOOP ", b"AUTH PLAIN "]),
    st.integers(min_value=0, max_value=14_000).map(lambda n: b"A" * n),
    st.sampled_from([b"\r\n", b""]),
).map(_join)

pieces = st.one_of(
    commands, commands, commands, data_bodies, bdat_chunks(), long_lines, st.binary(max_size=64)
)
OPENING = b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"
streams = st.tuples(
    st.sampled_from([OPENING, b"EHLO client.test\r\n", b""]),
    st.lists(pieces, max_size=20).map(b"".join),
).map(_join)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length): the reads a server sees."""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


cut_points = st.lists(st.integers(min_value=0), max_size=12)
