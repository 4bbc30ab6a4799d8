"""Delivery refuses to loop back to Outrider itself (issue 8.1): own listening addresses
are not connected to, a server greeting with our own hostname is left, and both bounce
the domain's mail with 5.4.6 "mail for X loops back to myself"; an explicit route skips it.
"""

from __future__ import annotations

import ipaddress
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from outrider.config.loader import parse_config
from outrider.config.model import Config
from outrider.delivery.dns import MxHost
from outrider.delivery.loops import (
    IP,
    OwnAddresses,
    drop_own,
    loop_outcome,
    names_host,
)
from outrider.delivery.smtp_client import SmtpConnectError, SmtpTimeouts
from outrider.delivery.smtp_transport import SmtpTransport
from outrider.delivery.targets import Target
from outrider.delivery.tls_policy import TlsRequirement
from outrider.delivery.transport import Route
from outrider.policy.outcome import Scope, Verdict
from outrider.smtp.client import SmtpClientConnection
from outrider.smtp.replies import Reply

HOSTNAME = "mta.outrider.test"


def ip(text: str) -> IP:
    return ipaddress.ip_address(text)


# -- pure pieces ---------------------------------------------------------------------------


def test_loop_outcome_is_a_permanent_domain_failure_with_5_4_6() -> None:
    outcome = loop_outcome("loop.test")
    assert outcome.verdict is Verdict.PERMANENT
    assert outcome.scope is Scope.DOMAIN
    assert outcome.status == "5.4.6"
    assert outcome.diagnostic == "554 5.4.6 mail for loop.test loops back to myself"


def test_own_addresses_exact_listeners() -> None:
    own = OwnAddresses([("127.0.0.1", 2525), ("2001:db8::5", 25)], is_local=lambda _: True)
    assert own.contains("127.0.0.1", 2525)
    assert own.contains("::ffff:127.0.0.1", 2525)  # IPv4-mapped
    assert own.contains("2001:db8::5", 25)
    assert not own.contains("127.0.0.1", 25)  # another port
    assert not own.contains("127.0.0.2", 2525)  # another address
    assert not own.contains("not-an-ip", 2525)
    assert own.contains("0.0.0.0", 2525)  # connecting to 0.0.0.0 reaches 127.0.0.1
    assert not own.contains("::", 2525)


def test_own_addresses_wildcard_listeners_match_the_hosts_addresses() -> None:
    local = {ip("127.0.0.1"), ip("198.51.100.7"), ip("::1")}
    asked: list[IP] = []

    def is_local(address: IP) -> bool:
        asked.append(address)
        return address in local

    own = OwnAddresses([("0.0.0.0", 25), ("::", 587)], is_local=is_local)
    assert own.contains("198.51.100.7", 25)
    assert own.contains("127.0.0.1", 25)
    assert not own.contains("192.0.2.1", 25)  # someone else
    assert not own.contains("198.51.100.7", 587)  # the :: listener is IPv6 only (V6ONLY)
    assert own.contains("::1", 587)
    assert not own.contains("::1", 25)
    assert own.contains("198.51.100.7", 25)
    assert asked.count(ip("198.51.100.7")) == 1  # cached


def test_own_addresses_cache_expires() -> None:
    clock = [0.0]
    local = {ip("198.51.100.7")}
    own = OwnAddresses([("0.0.0.0", 25)], is_local=lambda a: a in local, clock=lambda: clock[0])
    assert own.contains("198.51.100.7", 25)
    local.clear()  # the address was removed from the host
    assert own.contains("198.51.100.7", 25)
    clock[0] += 61
    assert not own.contains("198.51.100.7", 25)


def test_own_addresses_ignore_ephemeral_ports_and_are_falsy_without_listeners() -> None:
    assert not OwnAddresses([])
    own = OwnAddresses([("127.0.0.1", 0)])
    assert not own
    assert not own.contains("127.0.0.1", 0)


def pref(target: tuple[str, int]) -> int:
    return target[1]


def test_drop_own_keeps_only_better_mx_hosts() -> None:
    # RFC 5321 5.1: drop ourselves and every MX of equal or worse preference.
    targets = [("a", 10), ("b", 20), ("me", 20), ("c", 20), ("d", 30)]
    kept, looped = drop_own(targets, lambda t: t[0] == "me", pref)
    assert (kept, looped) == ([("a", 10)], True)
    kept, looped = drop_own(targets, lambda t: t[0] == "nobody", pref)
    assert (kept, looped) == (targets, False)
    kept, looped = drop_own([("me", 10), ("b", 20)], lambda t: t[0] == "me", pref)
    assert (kept, looped) == ([], True)


@pytest.mark.parametrize(
    ("reply", "ours"),
    [
        (Reply(220, "", f"{HOSTNAME} ESMTP Outrider"), True),
        (Reply(220, "", "MTA.Outrider.TEST. ESMTP"), True),
        (Reply(250, "", f"{HOSTNAME}\nPIPELINING\nSIZE 1000"), True),
        (Reply(220, "", "mx.example.test ESMTP"), False),
        (Reply(220, "", f"mx.example.test ESMTP greets {HOSTNAME}"), False),
        (Reply(220, "", ""), False),
        (None, False),
    ],
)
def test_names_host(reply: Reply | None, ours: bool) -> None:
    assert names_host(reply, HOSTNAME) is ours


def test_client_keeps_the_ehlo_reply() -> None:
    conn = SmtpClientConnection("client.test")
    conn.receive_data(b"220 mx.test ESMTP\r\n")
    assert conn.ehlo_reply is None
    conn.receive_data(b"250-mx.test hello\r\n250 PIPELINING\r\n")
    assert conn.ehlo_reply is not None
    assert conn.ehlo_reply.lines()[0] == "mx.test hello"


def test_client_keeps_the_helo_reply_when_ehlo_is_refused() -> None:
    conn = SmtpClientConnection("client.test")
    conn.receive_data(b"220 mx.test ESMTP\r\n")
    conn.receive_data(b"502 5.5.1 no EHLO\r\n")
    conn.receive_data(b"250 mx.test\r\n")
    assert conn.ehlo_reply is not None and conn.ehlo_reply.text == "mx.test"


# -- the transport -------------------------------------------------------------------------


class FakeResolver:
    def __init__(self, mx: dict[str, list[MxHost]]) -> None:
        self.mx = mx

    async def resolve_mx(self, domain: str) -> list[MxHost]:
        return self.mx[domain]

    async def resolve_addresses(self, host: str) -> tuple[str, ...]:
        raise AssertionError("no route host names in these tests")


@dataclass
class FakeSession:
    greeting: Reply | None
    ehlo_reply: Reply | None
    closed: bool = False
    remote_host: str = ""

    async def close(self) -> None:
        self.closed = True


@dataclass
class Dialer:
    """Stands in for SmtpTransport._connect: records targets, opens fake sessions."""

    greeting: str = "mx.example.test ESMTP"
    refuse: set[str] = field(default_factory=set)
    dialled: list[tuple[str, int]] = field(default_factory=list)
    sessions: list[FakeSession] = field(default_factory=list)

    async def __call__(
        self, route: Route, target: Target, timeouts: SmtpTimeouts, tls: TlsRequirement
    ) -> FakeSession:
        self.dialled.append((target.address, target.port))
        if target.address in self.refuse:
            raise SmtpConnectError("refused", address=target.address, host=target.host)
        name = self.greeting.split()[0]
        session = FakeSession(Reply(220, "", self.greeting), Reply(250, "", f"{name} hello"))
        self.sessions.append(session)
        return session


def config(extra: str = "", listener: str = "127.0.0.1:2525") -> Config:
    return parse_config(
        textwrap.dedent(
            f"""
            [server]
            hostname = "{HOSTNAME}"
            [[listener]]
            address = "{listener}"
            [mta-sts]
            enabled = false
            """
        )
        + textwrap.dedent(extra)
    )


MX: dict[str, list[MxHost]] = {
    "loop.test": [MxHost("mx.loop.test", 10, ("127.0.0.1",))],
    "backup.test": [
        MxHost("mx1.backup.test", 10, ("192.0.2.10",)),
        MxHost("me.backup.test", 20, ("127.0.0.1",)),
        MxHost("mx3.backup.test", 30, ("192.0.2.30",)),
    ],
    "other.test": [MxHost("mx.other.test", 10, ("192.0.2.10",))],
}


def transport(cfg: Config, dialer: Dialer) -> SmtpTransport:
    smtp = SmtpTransport(cfg, FakeResolver(MX))  # type: ignore[arg-type]
    smtp._connect = dialer  # type: ignore[assignment,method-assign]
    return smtp


def route(cfg: Config, domain: str) -> Route:
    def observe(reply: Reply, phase: str, host: str) -> None:
        pass

    return Route(domain, domain, "default", cfg.policy_for(domain), observe)


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


async def test_mx_that_is_our_listener_bounces_without_connecting() -> None:
    cfg = config('[domain."loop.test"]\nsmtp-port = 2525\n')
    dialer = Dialer()
    opened = await transport(cfg, dialer).open(route(cfg, "loop.test"))
    assert opened.connection is None
    assert opened.failure == loop_outcome("loop.test")
    assert dialer.dialled == []
    # The same address on another port (MX port 25, we listen on 2525) is not us.
    cfg = config()
    opened = await transport(cfg, dialer).open(route(cfg, "loop.test"))
    assert opened.connection is not None
    assert dialer.dialled == [("127.0.0.1", 25)]


async def test_wildcard_listener_covers_loopback() -> None:
    cfg = config('[domain."loop.test"]\nsmtp-port = 2525\n', listener="0.0.0.0:2525")
    dialer = Dialer()
    opened = await transport(cfg, dialer).open(route(cfg, "loop.test"))
    assert opened.failure == loop_outcome("loop.test")
    assert dialer.dialled == []


async def test_address_literal_domain_of_our_own_listener_bounces() -> None:
    cfg = config('[domain."*"]\nsmtp-port = 2525\n')
    dialer = Dialer()
    opened = await transport(cfg, dialer).open(route(cfg, "[127.0.0.1]"))
    assert opened.failure == loop_outcome("[127.0.0.1]")
    assert dialer.dialled == []


async def test_backup_mx_tries_only_better_hosts() -> None:
    cfg = config('[domain."backup.test"]\nsmtp-port = 2525\n')
    dialer = Dialer()
    smtp = transport(cfg, dialer)
    opened = await smtp.open(route(cfg, "backup.test"))
    assert opened.connection is not None
    assert dialer.dialled == [("192.0.2.10", 2525)]  # never us, never the worse backup
    # When the better host is down, the mail waits for it (no loop, no worse MX).
    dialer = Dialer(refuse={"192.0.2.10"})
    smtp = transport(cfg, dialer)
    opened = await smtp.open(route(cfg, "backup.test"))
    assert opened.connection is None
    assert opened.failure is not None and opened.failure.verdict is Verdict.TRANSIENT
    assert dialer.dialled == [("192.0.2.10", 2525)]


async def test_server_greeting_with_our_hostname_bounces() -> None:
    cfg = config()
    dialer = Dialer(greeting=f"{HOSTNAME} ESMTP Outrider")
    opened = await transport(cfg, dialer).open(route(cfg, "other.test"))
    assert opened.connection is None
    assert opened.failure == loop_outcome("other.test")
    assert [s.closed for s in dialer.sessions] == [True]


async def test_server_ehlo_with_our_hostname_bounces() -> None:
    cfg = config()
    dialer = Dialer()

    async def dial(*args: Any) -> FakeSession:
        session = await Dialer.__call__(dialer, *args)
        session.ehlo_reply = Reply(250, "", f"{HOSTNAME.upper()}\nPIPELINING")
        return session

    smtp = transport(cfg, dialer)
    smtp._connect = dial  # type: ignore[assignment,method-assign]
    opened = await smtp.open(route(cfg, "other.test"))
    assert opened.failure == loop_outcome("other.test")


async def test_an_explicit_route_may_lead_to_ourselves() -> None:
    greeting = f"{HOSTNAME} ESMTP Outrider"
    cfg = config('[domain."loop.test"]\nsmtp-port = 2525\n')
    dialer = Dialer(greeting=greeting)
    smtp = transport(cfg, dialer)
    assert (await smtp.open(route(cfg, "loop.test"))).failure == loop_outcome("loop.test")
    assert (await smtp.open(route(cfg, "other.test"))).failure == loop_outcome("other.test")
    cfg = config(
        """
        [domain."loop.test"]
        route = "127.0.0.1:2525"
        [domain."other.test"]
        route = "192.0.2.10:25"
        """
    )
    smtp = transport(cfg, dialer)
    dialer.dialled.clear()
    opened = await smtp.open(route(cfg, "loop.test"))
    assert opened.connection is not None
    opened = await smtp.open(route(cfg, "other.test"))
    assert opened.connection is not None
    assert dialer.dialled == [("127.0.0.1", 2525), ("192.0.2.10", 25)]


async def test_reload_picks_up_new_listeners() -> None:
    cfg = config()
    dialer = Dialer()
    smtp = transport(cfg, dialer)
    assert (await smtp.open(route(cfg, "loop.test"))).connection is not None
    reloaded = config(listener="127.0.0.1:25")
    smtp.update_config(reloaded)
    opened = await smtp.open(route(reloaded, "loop.test"))
    assert opened.failure == loop_outcome("loop.test")
