"""RFC 5321 paths and ESMTP parameters of MAIL FROM and RCPT TO.

Pure string parsing shared by the server (and usable by the client for xtext).
Syntax is checked with a few compiled regular expressions so a command costs a
handful of C-level matches, and every failure carries the exact SMTP reply to send.
Extensions: SIZE (RFC 1870), BODY (RFC 6152, RFC 3030), SMTPUTF8 (RFC 6531),
DSN RET/ENVID/NOTIFY/ORCPT (RFC 3461), AUTH= (RFC 4954 5).

Routing syntax is never interpreted: a source route (``<@a,@b:user@c>``) is dropped
as RFC 5321 4.1.1.3 says, one trailing dot of the domain is removed (``user@d.``
is ``user@d``), and ``%`` or ``!`` in a local part stay part of the local part, so
the domain after the last ``@`` alone decides where a message goes.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from outrider.message.envelope import Notify, Ret
from outrider.smtp.replies import Reply

BodyType = Literal["7BIT", "8BITMIME", "BINARYMIME"]

MAX_ENVID_LENGTH = 100  # RFC 3461 4.4, encoded form
MAX_ORCPT_LENGTH = 500  # RFC 3461 4.2, encoded form
_MAX_SIZE_DIGITS = 20


@dataclass(frozen=True, slots=True)
class MailParams:
    """ESMTP parameters of MAIL FROM. ``envid`` is xtext-decoded."""

    size: int | None = None
    body: BodyType | None = None
    smtputf8: bool = False
    ret: Ret | None = None
    envid: str | None = None
    auth: str | None = None  # AUTH= (xtext decoded): "<>" or the original submitter


@dataclass(frozen=True, slots=True)
class RcptParams:
    """ESMTP parameters of RCPT TO. ``orcpt`` is "addr-type;address", xtext-decoded."""

    notify: Notify | None = None
    orcpt: str | None = None


# The parameters of a command that gives none (most): immutable, so one of each serves all.
NO_MAIL_PARAMS = MailParams()
NO_RCPT_PARAMS = RcptParams()


class GrammarError(ValueError):
    """A MAIL/RCPT argument was refused; ``reply`` is what the server must answer."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


def _syntax(text: str) -> GrammarError:
    return GrammarError(Reply(501, "5.5.4", text))


SMTPUTF8_REQUIRED = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")

# --- address grammar (RFC 5321 4.1.2, extended by RFC 6531 3.3 with UTF-8) -------------

_U = "\u0080-\U0010ffff"  # UTF8-non-ascii; C1 controls are refused earlier by _CONTROL
_LD = "[A-Za-z0-9" + _U + "]"
_SUB_DOMAIN = _LD + "+(?:-+" + _LD + "+)*"  # unambiguous form of Let-dig [Ldh-str]
_DOMAIN = _SUB_DOMAIN + r"(?:\." + _SUB_DOMAIN + ")*"
_ATOM = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~" + _U + "-]+"
_DOT_STRING = _ATOM + r"(?:\." + _ATOM + ")*"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e' + _U + r"]|\\[\x20-\x7e])*" + '"'
_LITERAL = r"\[[^\[\]\\\x00-\x20\x7f]+\]"
_MAILBOX = "(?:" + _DOT_STRING + "|" + _QUOTED + ")@(?:" + _DOMAIN + r"\.?|" + _LITERAL + ")"
_ADL = "@" + _DOMAIN + "(?:,@" + _DOMAIN + ")*:"

_PATH = re.compile("<(?:" + _ADL + ")?(" + _MAILBOX + ")>")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_KEYWORD = re.compile("[A-Za-z0-9][A-Za-z0-9-]*")
_DIGITS = re.compile(f"[0-9]{{1,{_MAX_SIZE_DIGITS}}}")
# RFC 6533 utf-8-addr-xtext / utf-8-addr-unitext: QCHAR, EmbeddedUnicodeChar, and (unitext)
# any non-ASCII character; no controls, spaces, "+", "=" or a bare backslash.
_UTF8_ADDR = re.compile(
    r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e]|\\x\{[0-9A-Fa-f]{2,6}\}|[^\x00-\x7f])+"
)
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-Fa-f]{2})*")
_XTEXT_HEX = re.compile(rb"\+([0-9A-Fa-f]{2})")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*/?^_`{|}~.-]+")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")

_BODY_TYPES: dict[str, BodyType] = {
    "7BIT": "7BIT",
    "8BITMIME": "8BITMIME",
    "BINARYMIME": "BINARYMIME",
}
_NOTIFY_FLAGS = {
    "SUCCESS": Notify.SUCCESS,
    "FAILURE": Notify.FAILURE,
    "DELAY": Notify.DELAY,
}


def has_control(text: str) -> bool:
    """True if ``text`` holds a C0/C1 control character or DEL (never valid in a command)."""
    return _CONTROL.search(text) is not None


def _check_literal(mailbox: str) -> None:
    """Address literals must be a real IPv4 or IPv6 address; general literals are refused."""
    literal = mailbox[mailbox.rindex("[") + 1 : -1]
    try:
        if literal[:5].upper() == "IPV6:":
            if "%" in literal:  # scope ids are local to the sender's host
                raise ValueError(literal)
            ipaddress.IPv6Address(literal[5:])
        elif _IPV4.fullmatch(literal):
            ipaddress.IPv4Address(literal)
        else:
            raise ValueError(literal)
    except ValueError:
        raise _syntax("Invalid address literal") from None


def _split_path(text: str, *, null_ok: bool, postmaster_ok: bool) -> tuple[str, str]:
    """Return (mailbox without brackets or source route, remaining parameter text)."""
    text = text.lstrip(" ")  # "MAIL FROM: <a@b>" is common and harmless
    if has_control(text):
        raise _syntax("Control characters are not allowed")
    if null_ok and text.startswith("<>"):
        mailbox, end = "", 2
    elif postmaster_ok and text[:12].lower() == "<postmaster>":
        mailbox, end = text[1:11], 12
    else:
        match = _PATH.match(text)
        if match is None:
            raise _syntax("Bad address syntax")
        mailbox, end = match.group(1), match.end()
        if mailbox.endswith("]"):
            _check_literal(mailbox)
        elif mailbox.endswith("."):
            mailbox = mailbox[:-1]  # a root-anchored domain: the same domain
    rest = text[end:]
    if rest and rest[0] != " ":
        raise _syntax("Bad address syntax")
    return mailbox, rest


def _split_params(rest: str) -> list[tuple[str, str | None]]:
    """Split ``SP keyword[=value]`` pairs; keywords are upper-cased, duplicates refused."""
    params: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for token in rest.split(" "):
        if not token:
            continue  # tolerate repeated or trailing spaces
        keyword, eq, value = token.partition("=")
        if not _KEYWORD.fullmatch(keyword):
            raise _syntax("Bad parameter syntax")
        keyword = keyword.upper()
        if keyword in seen:
            raise _syntax(f"Duplicate {keyword} parameter")
        seen.add(keyword)
        if eq and (not value or "=" in value):
            raise _syntax(f"Bad {keyword} parameter value")
        params.append((keyword, value if eq else None))
    return params


def _unsupported(keyword: str) -> GrammarError:
    return GrammarError(Reply(555, "5.5.4", f"Unsupported parameter {keyword}"))


def _required(keyword: str, value: str | None) -> str:
    if value is None:
        raise _syntax(f"{keyword} requires a value")
    return value


def xtext_decode(value: str) -> str:
    """Decode RFC 3461 xtext (``+XX`` hex escapes of UTF-8 octets); controls are refused."""
    if not _XTEXT.fullmatch(value):
        raise _syntax("Bad xtext encoding")
    if "+" not in value:
        return value
    raw = _XTEXT_HEX.sub(lambda m: bytes.fromhex(m.group(1).decode("ascii")), value.encode())
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _syntax("Bad xtext encoding") from None
    if has_control(decoded):  # would let a client inject lines into DSN headers
        raise _syntax("Control characters are not allowed")
    return decoded


def xtext_encode(value: str) -> str:
    """Encode text as RFC 3461 xtext (what a client sends for ENVID and ORCPT)."""
    out: list[str] = []
    for octet in value.encode("utf-8"):
        if 33 <= octet <= 126 and octet not in (0x2B, 0x3D):
            out.append(chr(octet))
        else:
            out.append(f"+{octet:02X}")
    return "".join(out)


def _parse_orcpt(value: str, smtputf8: bool) -> str:
    if len(value) > MAX_ORCPT_LENGTH:
        raise _syntax("ORCPT too long")
    addr_type, semi, address = value.partition(";")
    if not semi or not address or not _ADDR_TYPE.fullmatch(addr_type):
        raise _syntax("Bad ORCPT parameter")
    if addr_type.lower() == "utf-8":
        # RFC 6533: utf-8-addr-xtext (QCHAR and \\x{HEX}; no "+XX" xtext, so nothing is
        # decoded here) or, with SMTPUTF8, utf-8-addr-unitext (UTF-8 as sent). Kept as
        # given: the DSN builder writes the form its part needs.
        if (not smtputf8 and not address.isascii()) or not _UTF8_ADDR.fullmatch(address):
            raise _syntax("Bad ORCPT parameter")
        return f"utf-8;{address}"
    return f"{addr_type};{xtext_decode(address)}"


def _parse_notify(value: str) -> Notify:
    parts = value.upper().split(",")
    if parts == ["NEVER"]:
        return Notify.NEVER
    notify = Notify.NEVER
    for part in parts:
        flag = _NOTIFY_FLAGS.get(part)
        if flag is None:  # includes NEVER combined with other keywords
            raise _syntax("Bad NOTIFY parameter")
        notify |= flag
    return notify


def parse_mail(text: str) -> tuple[str, MailParams]:
    """Parse what follows ``MAIL FROM:``; returns (reverse-path, params). "" is the null path."""
    sender, rest = _split_path(text, null_ok=True, postmaster_ok=False)
    size: int | None = None
    body: BodyType | None = None
    smtputf8 = False
    ret: Ret | None = None
    envid: str | None = None
    auth: str | None = None
    for keyword, value in _split_params(rest) if rest else ():
        if keyword == "SIZE":
            value = _required(keyword, value)
            if not _DIGITS.fullmatch(value):
                raise _syntax("Bad SIZE parameter")
            size = int(value)
        elif keyword == "BODY":
            body_type = _BODY_TYPES.get(_required(keyword, value).upper())
            if body_type is None:
                raise _syntax("Bad BODY parameter")
            body = body_type
        elif keyword == "SMTPUTF8":
            if value is not None:
                raise _syntax("SMTPUTF8 takes no value")
            smtputf8 = True
        elif keyword == "RET":
            try:
                ret = Ret(_required(keyword, value).upper())
            except ValueError:
                raise _syntax("Bad RET parameter") from None
        elif keyword == "ENVID":
            value = _required(keyword, value)
            if len(value) > MAX_ENVID_LENGTH:
                raise _syntax("ENVID too long")
            envid = xtext_decode(value)
        elif keyword == "AUTH":
            value = _required(keyword, value)
            if len(value) > MAX_ORCPT_LENGTH:
                raise _syntax("AUTH parameter too long")
            auth = xtext_decode(value)
        else:
            raise _unsupported(keyword)
    if not smtputf8 and not sender.isascii():
        raise GrammarError(SMTPUTF8_REQUIRED)
    if not rest:
        return sender, NO_MAIL_PARAMS
    return sender, MailParams(
        size=size, body=body, smtputf8=smtputf8, ret=ret, envid=envid, auth=auth
    )


def parse_rcpt(text: str, *, smtputf8: bool = False) -> tuple[str, RcptParams]:
    """Parse what follows ``RCPT TO:``; ``smtputf8`` is whether MAIL FROM carried SMTPUTF8."""
    recipient, rest = _split_path(text, null_ok=False, postmaster_ok=True)
    notify: Notify | None = None
    orcpt: str | None = None
    for keyword, value in _split_params(rest) if rest else ():
        if keyword == "NOTIFY":
            notify = _parse_notify(_required(keyword, value))
        elif keyword == "ORCPT":
            orcpt = _parse_orcpt(_required(keyword, value), smtputf8)
        else:
            raise _unsupported(keyword)
    if not smtputf8 and not recipient.isascii():
        raise GrammarError(SMTPUTF8_REQUIRED)
    if not rest:
        return recipient, NO_RCPT_PARAMS
    return recipient, RcptParams(notify=notify, orcpt=orcpt)
