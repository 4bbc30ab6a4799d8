"""MAIL FROM / RCPT TO path and ESMTP parameter grammar."""

from __future__ import annotations

import pytest

from outrider.message.envelope import Notify, Ret
from outrider.smtp.grammar import (
    MAX_ENVID_LENGTH,
    MAX_ORCPT_LENGTH,
    GrammarError,
    MailParams,
    RcptParams,
    parse_mail,
    parse_rcpt,
    xtext_decode,
    xtext_encode,
)


def error_code(call: object) -> str:
    assert isinstance(call, GrammarError)
    return f"{call.reply.code} {call.reply.enhanced}"


def mail_error(text: str) -> str:
    with pytest.raises(GrammarError) as info:
        parse_mail(text)
    return error_code(info.value)


def rcpt_error(text: str, *, smtputf8: bool = False) -> str:
    with pytest.raises(GrammarError) as info:
        parse_rcpt(text, smtputf8=smtputf8)
    return error_code(info.value)


# --- paths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("<user@example.org>", "user@example.org"),
        ("<User.Name+tag@Example.ORG>", "User.Name+tag@Example.ORG"),
        (" <spaced@example.org>", "spaced@example.org"),
        ("<>", ""),
        ("<a!#$%&'*+/=?^_`{|}~-b@x.y>", "a!#$%&'*+/=?^_`{|}~-b@x.y"),
        ('<"quoted local"@example.org>', '"quoted local"@example.org'),
        ('<"with\\"escape\\\\"@example.org>', '"with\\"escape\\\\"@example.org'),
        ('<"a@b>c"@example.org>', '"a@b>c"@example.org'),
        ('<""@example.org>', '""@example.org'),
        ("<user@[192.0.2.1]>", "user@[192.0.2.1]"),
        ("<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]"),
        ("<user@[ipv6:::ffff:192.0.2.1]>", "user@[ipv6:::ffff:192.0.2.1]"),
        ("<@a.example,@b.example:user@d.example>", "user@d.example"),
        ("<@a.example:user@d.example>", "user@d.example"),
        ("<u@localhost>", "u@localhost"),
        ("<u@xn--bcher-kva.example>", "u@xn--bcher-kva.example"),
        ("<u@a--b.c-d.e>", "u@a--b.c-d.e"),
        ("<u@123.example>", "u@123.example"),
    ],
)
def test_valid_reverse_paths(text: str, address: str) -> None:
    assert parse_mail(text) == (address, MailParams())


@pytest.mark.parametrize(
    "text",
    [
        "user@example.org",
        "<user@example.org",
        "<user>",
        "<@example.org>",
        "<user@>",
        "<.user@example.org>",
        "<user.@example.org>",
        "<us..er@example.org>",
        "<user@example..org>",
        "<user@-example.org>",
        "<user@example-.org>",
        "<user@example.org..>",
        "<user@.>",
        "<user@[127.0.0.1].>",
        "<user@exa_mple.org>",
        "<us er@example.org>",
        '<"unterminated@example.org>',
        '<"bad\\\x7f"@example.org>',
        "<user@[192.0.2.256]>",
        "<user@[1.2.3]>",
        "<user@[IPv6:2001:db8::zz]>",
        "<user@[IPv6:fe80::1%eth0]>",
        "<user@[x-tag:whatever]>",
        "<user@[]>",
        "<@a.example user@d.example>",
        "<@a.example,user@d.example>",
        "<user@example.org>trailing",
        "<<user@example.org>>",
        "<user@example.org> <other@example.org>",
        "<postmaster>",
        "",
    ],
)
def test_invalid_reverse_paths(text: str) -> None:
    assert mail_error(text) in ("501 5.5.4", "555 5.5.4")


@pytest.mark.parametrize("control", ["\x00", "\x01", "\t", "\x1b", "\x7f", "\x85"])
def test_control_characters_refused(control: str) -> None:
    assert mail_error(f"<a{control}b@example.org>") == "501 5.5.4"
    assert mail_error(f"<ab@example.org> ENVID=x{control}") == "501 5.5.4"
    assert rcpt_error(f'<"a{control}b"@example.org>') == "501 5.5.4"


def test_postmaster_only_in_rcpt_any_case() -> None:
    assert parse_rcpt("<postmaster>") == ("postmaster", RcptParams())
    assert parse_rcpt("<PostMaster>")[0] == "PostMaster"
    assert parse_rcpt("<POSTMASTER> NOTIFY=NEVER")[1].notify is Notify.NEVER
    assert rcpt_error("<postmaster>x") == "501 5.5.4"
    assert rcpt_error("<>") == "501 5.5.4"


# --- SMTPUTF8 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "jöran@bücher.example",
        "用户@例子.广告",
        "θσερ@παράδειγμα.δοκιμή",
        '"ü x"@example.org',
        "a@ü",
    ],
)
def test_utf8_addresses_need_smtputf8(address: str) -> None:
    assert mail_error(f"<{address}>") == "553 5.6.7"
    assert parse_mail(f"<{address}> SMTPUTF8") == (address, MailParams(smtputf8=True))
    assert rcpt_error(f"<{address}>") == "553 5.6.7"
    assert parse_rcpt(f"<{address}>", smtputf8=True) == (address, RcptParams())


def test_smtputf8_takes_no_value() -> None:
    assert mail_error("<a@b.c> SMTPUTF8=yes") == "501 5.5.4"


# --- MAIL parameters ------------------------------------------------------------------


def test_all_mail_parameters() -> None:
    sender, params = parse_mail(
        "<a@b.example> size=12345 Body=BinaryMIME smtputf8 RET=full ENVID=QQ+2B+3Dx+C3+A9"
    )
    assert sender == "a@b.example"
    assert params == MailParams(
        size=12345, body="BINARYMIME", smtputf8=True, ret=Ret.FULL, envid="QQ+=xé"
    )


def test_tolerates_extra_spaces_between_parameters() -> None:
    assert parse_mail("<a@b.c>  SIZE=1   BODY=7BIT ")[1] == MailParams(size=1, body="7BIT")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("SIZE=", "501 5.5.4"),
        ("SIZE=-1", "501 5.5.4"),
        ("SIZE=1e3", "501 5.5.4"),
        ("SIZE=" + "9" * 21, "501 5.5.4"),
        ("SIZE=1 SIZE=2", "501 5.5.4"),
        ("size=1 SIZE=1", "501 5.5.4"),
        ("BODY", "501 5.5.4"),
        ("BODY=8BIT", "501 5.5.4"),
        ("RET=NONE", "501 5.5.4"),
        ("RET", "501 5.5.4"),
        ("ENVID=" + "x" * 101, "501 5.5.4"),
        ("ENVID=a+2", "501 5.5.4"),
        ("ENVID=a+ZZ", "501 5.5.4"),
        ("ENVID=a+0D+0Ab", "501 5.5.4"),
        ("ENVID=a+FF", "501 5.5.4"),
        ("ENVID=ü", "501 5.5.4"),
        ("ENVID=a=b", "501 5.5.4"),
        ("-SIZE=1", "501 5.5.4"),
        ("SI_ZE=1", "501 5.5.4"),
        ("=1", "501 5.5.4"),
        ("AUTH", "501 5.5.4"),
        ("AUTH=a+ZZ", "501 5.5.4"),
        ("NOTIFY=NEVER", "555 5.5.4"),
        ("X-FOO", "555 5.5.4"),
    ],
)
def test_bad_mail_parameters(params: str, expected: str) -> None:
    assert mail_error(f"<a@b.c> {params}") == expected


# --- RCPT parameters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "notify"),
    [
        ("NEVER", Notify.NEVER),
        ("never", Notify.NEVER),
        ("SUCCESS", Notify.SUCCESS),
        ("FAILURE,DELAY", Notify.FAILURE | Notify.DELAY),
        ("delay,success,failure", Notify.SUCCESS | Notify.FAILURE | Notify.DELAY),
    ],
)
def test_notify(value: str, notify: Notify) -> None:
    assert parse_rcpt(f"<a@b.c> NOTIFY={value}")[1].notify == notify


@pytest.mark.parametrize(
    "value", ["NEVER,SUCCESS", "SUCCESS,NEVER", "", "SUCCESS,", "ALWAYS", "SUCCESS;DELAY"]
)
def test_bad_notify(value: str) -> None:
    assert rcpt_error(f"<a@b.c> NOTIFY={value}") == "501 5.5.4"


@pytest.mark.parametrize(
    ("value", "orcpt"),
    [
        ("rfc822;user@example.org", "rfc822;user@example.org"),
        ("RFC822;user+40example.org", "RFC822;user@example.org"),
        ("rfc822;a+2Bb+3Dc@d.e", "rfc822;a+b=c@d.e"),
        # RFC 6533 utf-8-addr-xtext: kept as given (no "+XX" decoding for this type).
        ("utf-8;j\\x{F6}ran@example.org", "utf-8;j\\x{F6}ran@example.org"),
        ("UTF-8;user@example.org", "utf-8;user@example.org"),
        ("x400;/C+3DUS/", "x400;/C=US/"),
    ],
)
def test_orcpt(value: str, orcpt: str) -> None:
    params = parse_rcpt(f"<a@b.c> ORCPT={value} NOTIFY=FAILURE")[1]
    assert params == RcptParams(notify=Notify.FAILURE, orcpt=orcpt)


@pytest.mark.parametrize(
    "value",
    ["user@example.org", "rfc822;", ";user@x", "rfc 822;x", "rfc822;a+0Ab", "a;" + "x" * 500],
)
def test_bad_orcpt(value: str) -> None:
    assert rcpt_error(f"<a@b.c> ORCPT={value}") == "501 5.5.4"


def test_unknown_rcpt_parameter() -> None:
    assert rcpt_error("<a@b.c> SIZE=1") == "555 5.5.4"


# --- xtext -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("", ""),
        ("plain", "plain"),
        ("a+2Bb", "a+b"),
        ("+3D", "="),
        ("a+20b", "a b"),
        ("+e2+82+ac", "€"),
    ],
)
def test_xtext_decode(encoded: str, decoded: str) -> None:
    assert xtext_decode(encoded) == decoded


@pytest.mark.parametrize("text", ["", "simple", "a+b=c d", "jöran€", "~!@#$%^&*()"])
def test_xtext_roundtrip(text: str) -> None:
    encoded = xtext_encode(text)
    assert all(33 <= ord(c) <= 126 and c != "=" for c in encoded)
    assert xtext_decode(encoded) == text


def test_xtext_encode_escapes_plus_equals_and_space() -> None:
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<user@example.org.>", "user@example.org"),
        ("<user@EXAMPLE.org.>", "user@EXAMPLE.org"),
        ("<@relay.test:user@outside.test>", "user@outside.test"),
        ("<@a.test,@b.test:user@outside.test.>", "user@outside.test"),
        ("<user%outside.test@relay.test>", "user%outside.test@relay.test"),
        ("<outside.test!user@relay.test>", "outside.test!user@relay.test"),
        ('<"user@outside.test"@relay.test>', '"user@outside.test"@relay.test'),
    ],
)
def test_routing_syntax_is_normalised_never_interpreted(text: str, expected: str) -> None:
    assert parse_rcpt(text)[0] == expected


@pytest.mark.parametrize(
    ("text", "auth"),
    [
        ("<a@b.test> AUTH=<>", "<>"),
        ("<a@b.test> AUTH=user+2Bx@b.test", "user+x@b.test"),
        ("<a@b.test>", None),
    ],
)
def test_auth_parameter(text: str, auth: str | None) -> None:
    assert parse_mail(text)[1].auth == auth


def test_null_sender_then_parameters() -> None:
    sender, params = parse_mail("<> SIZE=100")
    assert (sender, params.size) == ("", 100)
    assert mail_error("<>x") == "501 5.5.4"
    assert mail_error("<>SIZE=100") == "501 5.5.4"


def test_xtext_encodes_every_octet_outside_33_to_126_and_plus_and_equals() -> None:
    assert xtext_encode("\x7f") == "+7F"
    assert xtext_encode(" ") == "+20"
    assert xtext_encode("!~") == "!~"  # 33 and 126 are sent as they are
    assert xtext_encode("a+b=c") == "a+2Bb+3Dc"
    assert xtext_encode("é") == "+C3+A9"


@pytest.mark.parametrize(
    ("keyword", "limit"), [("ENVID", MAX_ENVID_LENGTH), ("AUTH", MAX_ORCPT_LENGTH)]
)
def test_mail_parameters_at_their_length_limit(keyword: str, limit: int) -> None:
    at_limit = "x" * (limit - len("a@b.example")) + "a@b.example"
    _, params = parse_mail(f"<a@b.example> {keyword}={at_limit}")
    assert getattr(params, keyword.lower()) == at_limit
    assert mail_error(f"<a@b.example> {keyword}=x{at_limit}") == "501 5.5.4"


@pytest.mark.parametrize(
    "value",
    [
        "utf-8;j+C3+B6ran@example.org",  # xtext is not allowed in the utf-8 type
        "utf-8;a\\b@example.org",  # a backslash only as \\x{HEX}
        "utf-8;jöran@example.org",  # unitext needs SMTPUTF8
    ],
)
def test_bad_utf8_orcpt(value: str) -> None:
    assert rcpt_error(f"<a@b.c> ORCPT={value}") == "501 5.5.4"


def test_utf8_orcpt_unitext_with_smtputf8() -> None:
    _, params = parse_rcpt("<jöran@example.org> ORCPT=utf-8;jöran@example.org", smtputf8=True)
    assert params.orcpt == "utf-8;jöran@example.org"


def test_orcpt_at_its_length_limit() -> None:
    value = "rfc822;" + "x" * (MAX_ORCPT_LENGTH - len("rfc822;@b.example")) + "@b.example"
    assert len(value) == MAX_ORCPT_LENGTH
    _, params = parse_rcpt(f"<a@b.example> ORCPT={value}")
    assert params.orcpt == value
    assert rcpt_error(f"<a@b.example> ORCPT=x{value}") == "501 5.5.4"


@pytest.mark.parametrize("keyword", ["ENVID", "AUTH"])
def test_empty_envid_and_auth_values_are_refused(keyword: str) -> None:
    assert mail_error(f"<a@b.example> {keyword}=") == "501 5.5.4"


def test_orcpt_address_may_contain_a_semicolon() -> None:
    """Only the first ';' separates the address type from the address."""
    _, params = parse_rcpt("<a@b.example> ORCPT=rfc822;x;y@b.example")
    assert params.orcpt == "rfc822;x;y@b.example"


# --- what a refusal says ---------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["SIZE", "BODY", "ENVID", "AUTH"])  # RET: "Bad RET"
def test_a_mail_parameter_without_its_value_is_named_in_the_reply(keyword: str) -> None:
    with pytest.raises(GrammarError) as info:
        parse_mail(f"<a@b.test> {keyword}")
    assert (info.value.reply.code, info.value.reply.text) == (501, f"{keyword} requires a value")
    assert str(info.value) == str(info.value.reply)


@pytest.mark.parametrize("keyword", ["NOTIFY", "ORCPT"])
def test_a_rcpt_parameter_without_its_value_is_named_in_the_reply(keyword: str) -> None:
    with pytest.raises(GrammarError) as info:
        parse_rcpt(f"<a@b.test> {keyword}")
    assert (info.value.reply.code, info.value.reply.text) == (501, f"{keyword} requires a value")


def test_an_unknown_parameter_is_named_in_the_reply() -> None:
    for parse in (parse_mail, parse_rcpt):
        with pytest.raises(GrammarError) as info:
            parse("<a@b.test> XFOO=1")
        assert (info.value.reply.code, info.value.reply.text) == (555, "Unsupported parameter XFOO")


def test_rcpt_without_smtputf8_refuses_a_non_ascii_address_by_default() -> None:
    with pytest.raises(GrammarError) as info:
        parse_rcpt("<ü@b.test>")
    assert info.value.reply.code == 553


def test_a_bracket_in_a_quoted_local_part_does_not_confuse_the_literal_check() -> None:
    assert parse_rcpt('<"a[b"@[127.0.0.1]>')[0] == '"a[b"@[127.0.0.1]'
