"""Fuzz the MAIL FROM / RCPT TO grammar: paths, ESMTP parameters, xtext.

Any argument text is either parsed into a clean address and parameters or refused
with the reply to send; and what Outrider's own client writes for an envelope is read
back by Outrider's server as the same envelope.
"""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from outrider.message.envelope import Envelope, Notify, Recipient, Ret
from outrider.smtp import client
from outrider.smtp.client import Extensions, SmtpClientConnection, utf8_addr_xtext
from outrider.smtp.grammar import (
    GrammarError,
    has_control,
    parse_mail,
    parse_rcpt,
    xtext_decode,
    xtext_encode,
)
from tests.fuzz.harness import fuzz_target
from tests.fuzz.smtp_streams import ADDRESSES, MAIL_PARAMS, RCPT_PARAMS

REFUSALS = {(501, "5.5.4"), (553, "5.6.7"), (555, "5.5.4")}
ENHANCED = re.compile(r"5\.[0-9]\.[0-9]")

fragments = st.sampled_from(
    [s.decode("utf-8", "replace") for s in ADDRESSES + MAIL_PARAMS + RCPT_PARAMS]
    + ["<", ">", "@", " ", ":", ",", ".", '"', "\\", "[", "]", "IPv6:", "+", "=", ";", "\x85"]
)
arguments = st.one_of(
    st.lists(st.one_of(fragments, st.text(max_size=8)), max_size=10).map("".join),
    st.text(max_size=60),
)


def check_address(address: str, smtputf8: bool) -> None:
    assert not has_control(address)
    assert address.isascii() or smtputf8
    if address and address.lower() != "postmaster":  # RCPT TO:<Postmaster>, any case
        local, at, domain = address.rpartition("@")
        assert at and local and domain and not domain.endswith(".")


def check_refusal(exc: GrammarError) -> None:
    assert (exc.reply.code, exc.reply.enhanced) in REFUSALS
    assert ENHANCED.fullmatch(exc.reply.enhanced)


@given(arguments, st.booleans())
@example("<a@b.test> ENVID=+0D+0A", False)
@example("<a@[IPv6:fe80::1%eth0]>", False)
@fuzz_target(weight=7.5)
def test_mail_and_rcpt_arguments_parse_or_are_refused(text: str, smtputf8: bool) -> None:
    try:
        sender, mail = parse_mail(text)
    except GrammarError as exc:
        check_refusal(exc)
    else:
        check_address(sender, mail.smtputf8)
        assert mail.size is None or 0 <= mail.size < 10**20
        for value in (mail.envid, mail.auth):
            assert value is None or not has_control(value)
    try:
        recipient, rcpt = parse_rcpt(text, smtputf8=smtputf8)
    except GrammarError as exc:
        check_refusal(exc)
    else:
        assert recipient
        check_address(recipient, smtputf8)
        assert rcpt.orcpt is None or (";" in rcpt.orcpt and not has_control(rcpt.orcpt))


clean_characters = st.characters(blacklist_categories=("Cs", "Cc")).filter(
    lambda c: not has_control(c)
)
controlless = st.text(clean_characters, max_size=40)
envids = st.text(clean_characters, min_size=1, max_size=8)  # encoded, within the 100 allowed


@given(controlless)
@fuzz_target(weight=3)
def test_xtext_round_trips_with_either_encoder(value: str) -> None:
    assert xtext_decode(xtext_encode(value)) == value
    assert xtext_decode(client.xtext_encode(value)) == value


# --- what the client writes, the server reads --------------------------------------------

atoms = st.text("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=8)
utf8_atoms = st.text("abc\u00e9\u00fc\u4e2d\U0001f600+=", min_size=1, max_size=6)
labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
domains = st.lists(labels, min_size=1, max_size=3).map(".".join)
mailboxes = st.tuples(
    st.lists(st.one_of(atoms, utf8_atoms), min_size=1, max_size=3).map(".".join), domains
).map("@".join)
orcpts = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(["rfc822", "RFC822"]), mailboxes).map(";".join),
    # a utf-8 ORCPT is kept in its RFC 6533 form ("+" and "=" as \x{HH}), as received
    mailboxes.map(lambda m: "utf-8;" + utf8_addr_xtext(m)),
)


@given(
    mailboxes,
    st.lists(st.tuples(mailboxes, orcpts, st.sampled_from(list(Notify))), min_size=1),
    st.sampled_from([None, Ret.FULL, Ret.HDRS]),
    st.one_of(st.none(), envids),
    st.integers(0, 10**12),
)
@example("a@b.test", [("c@d.test", "utf-8;\u00fc@d.test", Notify.FAILURE)], None, None, 1)
@fuzz_target(weight=0.4)
def test_client_commands_read_back_as_sent(
    sender: str,
    rcpts: list[tuple[str, str | None, Notify]],
    ret: Ret | None,
    envid: str | None,
    size: int,
) -> None:
    conn = SmtpClientConnection("client.test")
    conn.extensions = Extensions(dsn=True, smtputf8=True, size=0)
    envelope = Envelope("Q1", sender, [], 0.0, ret=ret, envid=envid)
    utf8 = not (sender + "".join(r[0] for r in rcpts)).isascii()
    command = conn._mail_command(envelope, size, utf8).decode("utf-8")
    assert command.startswith("MAIL FROM:") and command.endswith("\r\n")
    got_sender, mail = parse_mail(command[len("MAIL FROM:") : -2])
    assert (got_sender, mail.size, mail.ret, mail.smtputf8) == (sender, size, ret, utf8)
    assert mail.envid == envid
    for address, orcpt, notify in rcpts:
        recipient = Recipient(address, orcpt=orcpt, notify=notify)
        command = conn._rcpt_command(recipient, utf8).decode("utf-8")
        got, params = parse_rcpt(command[len("RCPT TO:") : -2], smtputf8=utf8)
        assert (got, params.notify) == (address, notify)
        if orcpt is not None and orcpt.isascii():
            assert params.orcpt == orcpt
