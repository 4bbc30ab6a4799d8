"""Typed, immutable configuration objects: the one declaration of every config key.

Each ``@table`` class is a config table: its :func:`~outrider.config.kinds.key` fields
are the table's keys (the TOML key is the field name with ``-`` for ``_`` unless
declared otherwise), each with its kind, its default as written in TOML and, as the
field's docstring, its documentation. The loader, the key tables of docs/config.md
and the JSON Schema (:mod:`outrider.config.docs`) are all derived from them.

Values are already converted to the units the daemon works in: durations in float
seconds, sizes in int bytes, rates as :class:`Rate` (``None``: unlimited), addresses
as ``(host, port)`` tuples and networks as :mod:`ipaddress` objects.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from outrider.accounting.records import DEFAULT_FIELDS
from outrider.accounting.records import FIELDS as ACCOUNTING_FIELDS
from outrider.config.cluster_kinds import NODE_NAME, REDIS_URL
from outrider.config.kinds import (
    BOOLEAN,
    DOMAIN,
    FILE,
    MAILBOX,
    NAME,
    NETWORK,
    PATH,
    PORT,
    RATE,
    REGEX,
    SIZE,
    SOURCE_HOST,
    STRING,
    Invalid,
    Kind,
    address,
    array,
    choice,
    duration,
    integer,
    key,
    never_or,
    table,
)
from outrider.config.layers import (
    DEFAULT_POLICY_KEY,
    DomainLayers,
    empty,
    normalize_lookup,
    resolve,
)
from outrider.config.local_kinds import (
    ALIASES,
    ALLOWED_SENDERS,
    DELIMITER,
    LOCAL_PART,
    LOCAL_TRANSPORT,
    MAILDIR_TEMPLATE,
    TARGETS,
    LocalTransport,
)
from outrider.config.units import IPNetwork
from outrider.config.units import Rate as Rate  # re-exported
from outrider.config.webhook_kinds import EVENTS, HEADERS, URL, WEBHOOK_EVENTS

DEFAULT_VMTA = "default"
LISTENER_ROLES = ("mx", "submission", "submissions")
LISTENER_TLS_MODES = ("none", "starttls", "implicit")
TLS_MIN_VERSIONS = ("TLSv1.2", "TLSv1.3")
TLS_VERIFY_MODES = ("none", "ca", "ca+hostname")
PASSWORD_HASHES = ("scrypt", "argon2id")
LOG_FORMATS = ("text", "json")
LIST_SENDER_WORDS = ("members", "anyone")
ACCOUNTING_RECORDS = ("r", "d", "b", "t", "q", "rb", "f")
PATTERN_ACTIONS = ("mode=backoff", "mode=normal", "disable-source-ip", "bounce", "defer")
PATTERN_PHASES = (
    "any",
    "connect",
    "greeting",
    "ehlo",
    "starttls",
    "mail",
    "rcpt",
    "data",
    "data-end",
)

Address = tuple[str, int]
DUR, DUR_0 = duration(positive=True), duration(positive=False)
INT_0, INT_1 = integer(0), integer(1)
LOAD = Kind(
    lambda v: _load(v),
    "number > 0",
    {"type": "number", "exclusiveMinimum": 0},
)
RULE = Kind(lambda value: value, "rule table", {"$ref": "#/$defs/rule"})  # the loader checks it
_FQDN = "the machine's FQDN (`socket.getfqdn()`)"
_CORES = "the number of cores, at most 8"
MAX_DEFAULT_RECEIVERS = 8


def default_receiver_processes() -> int:
    """One receiver per core (measured: 2 on 2 cores beats 1 and 0 for relay throughput),
    but at most 8: the one delivery process, not reception, limits throughput beyond that,
    and each receiver costs its own memory and spool committer."""
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_RECEIVERS))


_POSTMASTER = "none: `postmaster@` `hostname`"
_BY_ROLE = "`true` for roles `submission` and `submissions`, `false` for `mx`"
_TLS_DEFAULT = (
    '`"starttls"` when `tls-cert` is set (`"implicit"` for role `submissions`), else `"none"`'
)
_SYSTEM_CAS = "none: the system CAs"


def _load(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise Invalid([((), f"expected a load average above 0, got {value!r}")])
    return float(value)


# policy_for() results kept per (domain, vmta); oldest entries go first when full.
_POLICY_CACHE_MAX = 65536


@dataclass(frozen=True, slots=True)
class Problem:
    """One configuration mistake, located so an editor can jump to it."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found, so one edit-reload cycle fixes them all."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


@table
class ServerSettings:
    hostname: str = key(DOMAIN, factory=lambda: socket.getfqdn(), shown=_FQDN)
    """Name used in EHLO, in `Received:` headers and as the Reporting-MTA of DSNs."""
    postmaster: str | None = key(MAILBOX, default=None, shown=_POSTMASTER)
    """Where mail for this server's postmaster goes, e.g. `"hostmaster@example.com"`. `RCPT
    TO:<Postmaster>` (any case, no domain) and `postmaster@` `hostname` are accepted from any
    client, even one that may not relay (RFC 5321 section 4.5.1), and
    are queued for this address, which is then delivered like any other (route or MX). Unset,
    it is `postmaster@` `hostname` itself, delivered by `hostname`'s MX: that reaches a person
    only when the MX is another mail server, so set it on every server that takes mail from
    outside (see [docs/security.md](security.md#postmaster))."""
    spool_dir: Path = key(PATH, default="var/spool")
    """Where queued messages are stored."""
    log_dir: Path = key(PATH, default="var/log")
    """Where the delivery (accounting) and daemon logs are written: the accounting CSV files
    (`acct-YYYY-MM-DD.csv`) and the daemon log `outrider.log`, appended to by every process
    (also written to stderr) and reopened when logrotate moves it (see
    [docs/operations.md](operations.md#daemon-log))."""
    log_format: str = key(choice(LOG_FORMATS), default="text")
    """Daemon log lines: `"text"` (time, level, process, logger, message) or `"json"` (one JSON
    object per line, for log shippers)."""
    shutdown_timeout: float = key(DUR_0, default="30s")
    """How long SIGTERM waits for in-flight SMTP sessions and deliveries before stopping them."""
    receiver_processes: int = key(INT_0, factory=default_receiver_processes, shown=_CORES)
    """SMTP receiver processes. `0`: the single daemon process both receives and delivers. `N ≥ 1`:
    N child processes accept SMTP, sharing each listening port via `SO_REUSEPORT`, store to the
    shared spool and hand envelopes to the main process, which only delivers — this uses more
    than one core. The default, one per core (at most 8), gave the best relay throughput in
    `bench/relay.sh`; set `1` on a machine shared with other busy services."""
    max_delivery_concurrency: int = key(INT_1, default=500)
    """Total outbound SMTP connections across all domains."""
    max_received_headers: int = key(INT_1, default=50)
    """Most `Received:` header fields a message may carry once Outrider has added its own: one
    that arrives with this many or more has looped (or travelled too far) and is refused at the
    end of DATA with `554 5.4.6 Too many hops`, so the server that sent it bounces it. Like
    Postfix's `hopcount_limit`."""
    pid_file: Path | None = key(PATH, default=None)
    """If set, the daemon writes its process id here."""
    queue_only: bool = key(BOOLEAN, default=False)
    """Store new mail without delivering it at once; the next queue run (every
    `queue-run-interval`) delivers it. Off: mail is delivered on arrival (Exim's default)."""
    queue_only_load: float | None = key(LOAD, default=None, shown="none")
    """Switch to queue-only while the 1-minute load average is above this, and back once it is
    below it again (Exim's `queue_only_load`), so a loaded machine first takes mail in."""
    queue_remote_only: bool = key(BOOLEAN, default=False)
    """Deliver mail for local domains at once but hold remote mail for the next queue run."""
    queue_run_interval: float = key(DUR, default="5m")
    """How often mail held by the queue-only modes is picked up."""
    default_virtual_mta: str = key(NAME, default=DEFAULT_VMTA)
    """Virtual MTA or pool used for mail that nothing else assigns one to (see
    [docs/shaping.md](shaping.md#choosing-a-virtual-mta))."""
    state_dir: Path = key(PATH, default="var/state")
    """Where persistent runtime state (paused queues, backoff and disabled-source state, the
    `scram-secret` behind unknown users' SCRAM salts, …) is kept."""


@table
class DnsSettings:
    nameservers: tuple[Address, ...] = key(
        array(address(53, "address", ip_only=True), "addresses"),
        default=[],
        shown="none: the system resolver",
    )
    """Recursive resolvers to query for MX/A/AAAA, as IP `"host"` or `"host:port"` (port 53 if
    omitted). Host names are not allowed here."""
    timeout: float = key(DUR, default="5s")
    """Total time allowed for one DNS lookup."""


@table
class ListenerSettings:
    """One listening socket. The loader fills the role-dependent defaults (tls, auth, headers)."""

    address: Address = key(address(None, "address", allow_zero_port=True))
    """`"host:port"` to listen on, e.g. `"0.0.0.0:25"`, `"[::]:25"`, `"127.0.0.1:2525"`."""
    relay_networks: tuple[IPNetwork, ...] = key(
        array(NETWORK, "networks"), default=["127.0.0.0/8", "::1/128"]
    )
    """Clients from these networks may relay to any domain. `[]` means nobody may."""
    allow_address_literals: bool = key(BOOLEAN, default=False)
    """Accept address literals (`user@[192.0.2.1]`) as the sender or a recipient from clients
    that are neither in `relay-networks` nor authenticated. Off by default: a bounce to such a
    sender is delivered to whatever address it names, which may be Outrider itself (a mail
    loop)."""
    max_message_size: int = key(SIZE, default="50M")
    """Largest message accepted; advertised in the EHLO `SIZE` keyword."""
    max_rcpt_per_message: int = key(INT_1, default=1000)
    """Recipients accepted in one transaction; further RCPT commands are refused."""
    max_errors: int = key(INT_1, default=20)
    """Error replies after which the session is closed."""
    command_timeout: float = key(DUR, default="5m")
    """How long to wait for the client's next command. Bytes alone do not restart the clock, a
    complete line does: a client trickling a command a byte at a time, or sending an endless line,
    is cut off after this long."""
    data_timeout: float = key(DUR, default="10m")
    """How long to wait for more message data during DATA or BDAT. The clock restarts every 512
    octets received, so a client trickling its message is cut off."""
    max_connections: int = key(INT_1, default=1000)
    """Simultaneous client connections on this listener. Clients in `relay-networks` (when
    `limits-exempt-relay-networks` is on) may use 10% more, at least 10, so strangers filling the
    listener cannot lock out the servers that relay through it. With `receiver-processes` above 1
    each receiver takes its share (this divided by their number, rounded up): the kernel spreads
    connections evenly over them. The per-client limits and AUTH failure counts are shared by all
    receivers exactly."""
    banner: str = key(STRING, default="ESMTP Outrider")
    """Text after the hostname in the 220 greeting; one ASCII line."""
    role: str = key(choice(LISTENER_ROLES), default="mx")
    """`mx`: inbound mail from other servers (port 25). `submission`: mail from your own users and
    applications, STARTTLS (port 587). `submissions`: the same with TLS from the first byte
    (port 465). The role sets the defaults of `tls`, `auth` and `add-missing-headers`."""
    tls: str = key(choice(LISTENER_TLS_MODES), default="none", shown=_TLS_DEFAULT)
    """`starttls`: offer STARTTLS. `implicit`: TLS handshake right after connect. Both need
    `tls-cert` and `tls-key`; role `submissions` needs `implicit`."""
    tls_cert: Path | None = key(FILE, default=None)
    """PEM certificate chain for this listener. Must be given together with `tls-key`; the loader
    checks that both files exist and are readable."""
    tls_key: Path | None = key(FILE, default=None)
    """PEM private key for `tls-cert`."""
    tls_min_version: str = key(choice(TLS_MIN_VERSIONS), default="TLSv1.2")
    """Oldest TLS version accepted from clients."""
    auth: bool = key(BOOLEAN, default=False, shown=_BY_ROLE)
    """Offer SMTP AUTH (users from [auth] `users-file`). AUTH is only offered once the connection
    is encrypted, so an `auth` listener needs TLS, unless `allow-plaintext-auth` applies.
    Authenticated clients may relay."""
    allow_plaintext_auth: bool = key(BOOLEAN, default=False)
    """Also offer AUTH on an unencrypted connection. Only allowed when `address` is a loopback
    address (`127.0.0.0/8`, `::1`, `localhost`); anything else is an error."""
    max_connections_per_client: int = key(INT_0, default=20)
    """Simultaneous connections from one client IP address; `0` is unlimited."""
    max_connect_rate_per_client: Rate | None = key(RATE, default="60/m")
    """New connections accepted from one client IP address; further ones get 421 and are closed.
    `"unlimited"` removes the limit."""
    max_messages_per_connection: int = key(INT_0, default=1000)
    """Messages accepted in one connection, then 421 and close; `0` is unlimited."""
    max_rcpt_per_connection: int = key(INT_0, default=10000)
    """Recipients accepted in one connection over all its transactions; `0` is unlimited."""
    limits_exempt_relay_networks: bool = key(BOOLEAN, default=True)
    """Clients in `relay-networks` are not held to `max-connections-per-client`,
    `max-connect-rate-per-client`, `max-messages-per-connection` and `max-rcpt-per-connection`
    (like Postfix's `smtpd_client_event_limit_exceptions = $mynetworks`), so an application
    server injecting mail into its own MTA is not throttled by them. They still count towards
    `max-connections`."""
    limits_exempt_authenticated: bool = key(BOOLEAN, default=True)
    """After a successful AUTH, `max-messages-per-connection` and `max-rcpt-per-connection` no
    longer apply to the connection. The limits checked when a client connects
    (`max-connections-per-client`, `max-connect-rate-per-client`) still apply, since AUTH
    comes later; a user's own `--max-msg-rate` applies either way."""
    auth_max_failures: int = key(INT_1, default=5)
    """Failed AUTH attempts from one client IP within `auth-failure-window` after which that IP is
    blocked from AUTH for `auth-block-time`. An attempt is counted before its credentials are
    checked, so parallel guesses cannot get more than this many verified."""
    auth_max_concurrent_per_client: int = key(INT_0, default=3)
    """AUTH exchanges one client IP may have in progress at once, over all its connections (and
    all receiver processes); more are answered 454 4.7.0 without checking the credentials.
    `0` means no limit."""
    auth_failure_window: float = key(DUR, default="10m")
    """Window in which AUTH failures are counted."""
    auth_block_time: float = key(DUR, default="15m")
    """How long a client IP that reached `auth-max-failures` is refused AUTH (454 4.7.0)."""
    auth_failure_delay: float = key(DUR_0, default="1s")
    """Delay before the reply to a failed AUTH: this value after the first failure in a connection,
    doubled for each further failure, capped at 10 seconds. `0` disables it."""
    add_missing_headers: bool = key(BOOLEAN, default=False, shown=_BY_ROLE)
    """Add a `Message-ID:` and a `Date:` header to messages that lack them (RFC 6409 section 8)."""
    default_virtual_mta: str | None = key(NAME, default=None)
    """Virtual MTA or pool for mail received on this listener, unless the `X-Virtual-MTA` header
    selects one."""
    process_x_virtual_mta: bool = key(BOOLEAN, default=False)
    """Honour (and remove) an `X-Virtual-MTA:` header naming a virtual MTA or pool. Enable only
    where the clients are trusted."""

    @property
    def name(self) -> str:
        """``"host:port"`` (``"[v6]:port"``): how logs and ``Submission.listener`` name it."""
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def may_relay(self, client_ip: str) -> bool:
        """True if a client at ``client_ip`` may relay to any domain through this listener."""
        try:
            ip = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.relay_networks)


@table
class RelaySettings:
    domains: frozenset[str] = key(array(DOMAIN, "domains", make=frozenset), default=[])
    """Mail to these domains is accepted from any client (not only `relay-networks`) and delivered
    by route or MX."""


@table
class DomainPolicy:
    """Delivery policy for a recipient domain ([domain."NAME"] tables, merged)."""

    retry_after: tuple[float, ...] = key(
        array(DUR, "durations > 0", non_empty=True),
        default=["5m", "10m", "30m", "1h", "2h", "4h"],
    )
    """Wait before retry *n* after a temporary failure; the last value repeats for all later
    retries."""
    bounce_after: float = key(DUR_0, default="4d12h")
    """A message still undelivered this long after it was queued bounces with a DSN."""
    route: Address | None = key(
        address(25, "address, port 25 if omitted"), default=None, shown="none: MX lookup"
    )
    """Deliver to this smarthost instead of the domain's MX hosts, e.g. `"relay.example.net"`,
    `"127.0.0.2:2600"`, `"[2001:db8::1]:587"`."""
    max_smtp_out: int = key(INT_1, default=20)
    """Simultaneous outbound connections to this domain."""
    max_msg_per_connection: int = key(INT_0, default=0)
    """Messages sent over one connection before it is closed; `0` is unlimited."""
    connect_timeout: float = key(DUR, default="30s")
    """TCP connection set-up."""
    smtp_greeting_timeout: float = key(DUR, default="5m")
    """Wait for the server's 220 greeting."""
    smtp_command_timeout: float = key(DUR, default="5m")
    """Wait for replies to EHLO, MAIL, RCPT, RSET and STARTTLS, and for the TLS handshake."""
    smtp_data_init_timeout: float = key(DUR, default="2m")
    """Wait for the 354 reply to DATA."""
    smtp_data_block_timeout: float = key(DUR, default="3m")
    """Sending one block of message data."""
    smtp_data_termination_timeout: float = key(DUR, default="10m")
    """Wait for the reply after the final `.`."""
    connection_idle_timeout: float = key(DUR_0, default="5s")
    """How long an idle outbound connection is kept open for reuse; `0` closes it at once."""
    use_starttls: bool = key(BOOLEAN, default=True)
    """Upgrade to TLS when the server offers STARTTLS."""
    smtp_port: int = key(PORT, default=25)
    """TCP port of the MX hosts found in DNS (a `route` carries its own port). Other than 25 only
    for test rigs and private networks."""
    max_rcpt_per_transaction: int = key(INT_1, default=1000)
    """Recipients sent in one SMTP transaction; a message with more is sent in several
    transactions."""
    max_msg_rate: Rate | None = key(RATE, default="unlimited")
    """Messages delivered to this destination per time, over all its connections (per virtual
    MTA)."""
    max_connect_rate: Rate | None = key(RATE, default="unlimited")
    """New outbound connections opened to this destination per time."""
    queue_priority: int = key(integer(0, 100), default=50)
    """Share of delivery capacity when destinations compete for `max-delivery-concurrency`: higher
    is served first."""
    mx_rollup: bool = key(BOOLEAN, default=True)
    """Domains whose MX hosts are the same share one queue, with this domain's limits, so e.g. many
    Google-hosted domains are not each given `max-smtp-out` connections."""
    bounce_upon_no_mx: bool = key(BOOLEAN, default=False)
    """Bounce at once when the domain has no MX record, instead of falling back to its A/AAAA
    records."""
    smtp_421_means_mx_unavailable: bool = key(BOOLEAN, default=False)
    """Treat a 421 reply as "this MX host is unavailable": try the next MX host instead of
    deferring the message."""
    smtp_pattern_list: str | None = key(NAME, default=None)
    """`[smtp-pattern-list.NAME]` whose rules are matched against this destination's replies."""
    backoff_max_msg_rate: Rate | None = key(RATE, default="unlimited")
    """`max-msg-rate` while the destination is in backoff mode."""
    backoff_max_smtp_out: int = key(INT_1, default=1)
    """`max-smtp-out` while in backoff mode."""
    backoff_retry_after: float = key(DUR, default="1h")
    """Retry interval for deferred messages while in backoff mode (instead of `retry-after`)."""
    backoff_to_normal_after: float | None = key(never_or(DUR), default="never")
    """Return from backoff to normal mode this long after backoff started."""
    backoff_to_normal_after_delivery: bool = key(BOOLEAN, default=False)
    """Return to normal mode as soon as one message is delivered in backoff mode."""
    delay_warning_after: float | None = key(never_or(DUR), default="never")
    """Once a message has waited this long for a recipient that keeps failing temporarily, its
    sender gets one "delayed" DSN (RFC 3464, for recipients whose NOTIFY includes DELAY, which
    is the default). Like Postfix's `delay_warning_time`; Exim's equivalent is 24h."""
    reenable_source_ip_after: float = key(DUR, default="1h")
    """After a `disable-source-ip` pattern rule fired, how long the virtual MTA stays unused for
    this destination."""
    require_starttls: bool = key(BOOLEAN, default=False)
    """Deliver only over TLS: a server that does not offer STARTTLS, or a failed handshake, defers
    the message (451 4.7.4 when STARTTLS is not offered, 4.7.5 when the handshake or the
    certificate check fails) instead of sending in clear. Applies even when `use-starttls` is
    `false`."""
    tls_verify: str = key(choice(TLS_VERIFY_MODES), default="none")
    """Certificate check for outbound TLS. `none`: opportunistic, any certificate. `ca`: must chain
    to a trusted CA. `ca+hostname`: also must match the MX host name. A failed check defers the
    message when the check is required, else falls back as for `use-starttls`. `require-starttls
    = true` with `tls-verify = "ca+hostname"` is the strict setting."""
    tls_ca_file: Path | None = key(FILE, default=None, shown=_SYSTEM_CAS)
    """CA bundle (PEM) for `tls-verify`."""
    mta_sts: bool = key(BOOLEAN, default=True)
    """Honour the domain's MTA-STS policy (RFC 8461): in `enforce` mode deliver only to MX hosts
    the policy names, over TLS with a valid certificate. Needs `[mta-sts]` `enabled`."""


BUILTIN_POLICY = DomainPolicy()


@table
class VirtualMta:
    """A sending identity: source address, EHLO name and per-domain overrides.

    Its table may also hold [virtual-mta.NAME.domain."…"] override tables.
    """

    name: str
    source_ip: str | None = key(
        SOURCE_HOST,
        required=False,
        toml="smtp-source-host",
        shown="none: the kernel picks the source address, EHLO is the server `hostname`",
    )
    """Source address for outbound connections, then optionally the name sent in EHLO (should match
    the address's PTR record), e.g. `"192.0.2.10 mta10.example.net"`."""
    ehlo_name: str  # the loader splits smtp-source-host into source_ip and this
    domain_overrides: DomainLayers = field(default_factory=DomainLayers)


@table
class VmtaPool:
    """Virtual MTAs used in turn, in proportion to ``weights``."""

    name: str
    members: tuple[str, ...] = key(
        array(NAME, "virtual MTA names", non_empty=True), toml="virtual-mtas"
    )
    """The members, each listed once."""
    weights: tuple[int, ...] = key(
        array(INT_1, "integers ≥ 1", non_empty=True), required=False, shown="all `1`"
    )
    """Relative share of each member, same length as `virtual-mtas`: `[2, 1]` sends two thirds
    through the first."""


@table
class PatternList:
    """Only declares [smtp-pattern-list."NAME"]: Config.pattern_lists maps names to rules."""

    rules: tuple[Any, ...] = key(array(RULE, "rule tables", non_empty=True))
    """Checked in order; the first rule that matches a reply applies."""


@table
class PatternRule:
    """One smtp-pattern-list rule: a remote reply matching ``regex`` triggers ``action``.

    ``source`` names the rule for logs: ``smtp-pattern-list.NAME.rules[I]``.
    """

    regex: re.Pattern[str] = key(REGEX, toml="reply")
    """Python regular expression, case-insensitive, searched for in the whole reply (code, enhanced
    code and text, lines joined by a space). Checked at load time."""
    action: str = key(choice(PATTERN_ACTIONS))
    """What a match does."""
    phase: str = key(choice(PATTERN_PHASES), default="any")
    """Only match replies at this point of the session (`connect`: connection failures; `data-end`:
    the reply after the final `.`)."""
    source: str = ""


@table
class SenderDomainSettings:
    virtual_mta: str | None = key(NAME, default=None)
    """Virtual MTA or pool for mail whose MAIL FROM domain is `NAME`, unless the header or the
    listener chose one."""


@table
class AuthSettings:
    users_file: Path = key(PATH, default="var/users")
    """The user store for SMTP AUTH, managed with the `outrider` command line."""
    password_hash: str = key(choice(PASSWORD_HASHES), default="scrypt")
    """Hash for newly set passwords; existing ones keep theirs. `argon2id` needs the `argon2-cffi`
    package."""


@table
class MtaStsSettings:
    enabled: bool = key(BOOLEAN, default=True)
    """Fetch and honour MTA-STS policies at all."""
    cache_dir: Path | None = key(PATH, default=None, shown="none: in memory only")
    """Where fetched policies are kept across restarts (RFC 8461 requires remembering them until
    `max_age`)."""
    fetch_timeout: float = key(DUR, default="10s")
    """Time allowed for the DNS look-up and HTTPS fetch of one policy."""
    https_port: int = key(PORT, default=443)
    """Port of the `mta-sts.DOMAIN` policy host; other values for test rigs only."""
    ca_file: Path | None = key(FILE, default=None, shown=_SYSTEM_CAS)
    """CA bundle (PEM) that policy hosts' certificates must chain to."""


@table
class HttpSettings:
    address: Address | None = key(
        address(None, "address"), default=None, shown="none: no HTTP listener"
    )
    """Where the HTTP management API, `/metrics` and the web monitor listen, e.g.
    `"127.0.0.1:8080"`. Unset, there is no HTTP listener (the console commands still work over
    the control socket)."""
    admin_networks: tuple[IPNetwork, ...] = key(
        array(NETWORK, "networks"), default=["127.0.0.0/8", "::1/128"]
    )
    """Clients from these networks have admin rights without a token: they may read everything
    and act (retry, pause, delete, reload)."""
    monitor_networks: tuple[IPNetwork, ...] = key(array(NETWORK, "networks"), default=[])
    """Clients from these networks may read (status, queues, messages, metrics, the monitor)
    without a token, but not act."""
    tokens_file: Path = key(PATH, default="var/http-tokens")
    """Bearer tokens (`Authorization: Bearer ...`), managed with `outrider token add|list|del`;
    only a hash of each token is stored."""
    max_request_size: int = key(SIZE, default="10M")
    """Largest request body accepted; a bigger one gets 413."""
    metrics_top_queues: int = key(INT_1, default=20)
    """Per-queue metrics are reported for this many queues with the most recipients; the rest
    are summed under `queue="other"`, keeping the label count bounded."""


@table
class AccountingSettings:
    records: tuple[str, ...] = key(
        array(choice(ACCOUNTING_RECORDS), "record types"), default=["d", "b", "t", "q", "rb", "f"]
    )
    """Which record types the accounting log writes: `r` received (one row per accepted
    recipient), `d` delivered, `b` bounced, `t` transient failure (deferred), `q` queue mode
    change, `rb` remote (asynchronous) bounce and `f` feedback-loop complaint, both from mail
    to a `[bounce-domain]` (see [feedback.md](feedback.md))."""
    keep: float = key(DUR, default="30d")
    """Accounting files older than this are deleted (checked at start and at each daily
    rotation)."""
    fields: tuple[str, ...] = key(
        array(choice(ACCOUNTING_FIELDS), "accounting columns", non_empty=True),
        default=list(DEFAULT_FIELDS),
    )
    """The columns of the accounting file, in order: any of PowerMTA's `type`, `timeLogged`,
    `timeQueued`, `orig`, `rcpt`, `orcpt`, `dsnAction`, `dsnStatus`, `dsnDiag`, `dsnMta`,
    `bounceCat`, `srcType`, `srcMta`, `dlvType`, `dlvSourceIp`, `dlvDestinationIp`,
    `dlvEsmtpAvailable`, `dlvSize`, `vmta`, `jobId`, `envId`, `queue`, `vmtaPool` and
    Outrider's `queueId`, `msgId`, `size`, `rule`. The default is all of them in that order
    (see [accounting.md](accounting.md#columns)). A change starts a new file: the day's file
    with the old columns is moved aside to `acct-YYYY-MM-DD.N.csv`."""


@table
class SuppressionSettings:
    file: Path = key(PATH, default="var/suppression.db")
    """The suppression list (SQLite, WAL mode): addresses never attempted, per sender domain
    and global. `outrider suppression` and the HTTP API write it; the daemon sees changes at
    once. See docs/suppression.md."""
    auto_add: bool = key(BOOLEAN, default=True)
    """Add a recipient to its sender domain's list when it hard-bounces with category
    `bad-mailbox` or `bad-domain` (not when it expired after retries)."""


@table
class LocalDomainSettings:
    """A domain whose mail this server keeps (``[local-domain."example.com"]``)."""

    transport: LocalTransport = key(LOCAL_TRANSPORT, default="maildir")
    """Where its mailboxes are: `"maildir"` (files under `maildir`), `"lmtp:HOST:PORT"` or
    `"lmtp:unix:/path"` (a mailbox server such as Dovecot)."""
    maildir: str = key(MAILDIR_TEMPLATE, default="var/mail/{domain}/{user}/Maildir")
    """The Maildir of a mailbox, with `{domain}` and `{user}` (the mailbox name, lower case)."""
    mailboxes: tuple[str, ...] | None = key(
        array(LOCAL_PART, "local parts"), default=None, shown="none"
    )
    """The valid mailboxes (local parts). A Maildir domain needs these or `mailboxes-file`; an
    LMTP domain without either lets its LMTP server decide per recipient."""
    mailboxes_file: Path | None = key(FILE, default=None)
    """The valid mailboxes, one local part per line (`#` comments); re-read when it changes."""
    aliases: dict[str, tuple[str, ...]] = key(ALIASES, factory=dict, shown="none")
    """Names that stand for other addresses: `{ postmaster = "alice", sales = ["alice",
    "bob"], old = "someone@elsewhere.example" }`. A target without `@` is in this domain; it
    may be a mailbox, another alias, a list or a remote address (forwarding)."""
    aliases_file: Path | None = key(FILE, default=None)
    """More aliases in the `name: target, target` format of aliases(5); re-read when it
    changes. Commands, files and `:include:` are refused."""
    catch_all: tuple[str, ...] | None = key(TARGETS, default=None)
    """Where mail for an address that is no mailbox, alias or list goes (targets as for
    aliases). Without it such mail is refused at RCPT with 550 5.1.1."""
    recipient_delimiter: str = key(DELIMITER, default="+")
    """`alice+news@` reaches `alice` (an exact mailbox or alias `alice+news` still wins);
    `""` turns extensions off."""
    quota: int | None = key(SIZE, default=None, shown="none")
    """Largest total size of one Maildir mailbox; a message that does not fit is deferred
    (452 4.2.2) and bounced (5.2.2) once it expires."""


@table
class ListSettings:
    """A mailing list (``[list."team@example.com"]``) at a local domain."""

    members: tuple[str, ...] = key(array(MAILBOX, "addresses"), default=[])
    """The members' addresses (local or remote; a member may be another list)."""
    members_file: Path | None = key(FILE, default=None)
    """More members, one address per line (`#` comments); re-read when it changes."""
    allowed_senders: str | tuple[str, ...] = key(ALLOWED_SENDERS, default="members")
    """Who may post: `"members"`, `"anyone"`, or an array of addresses and domains. Others get
    550 5.7.1 at RCPT time."""
    bounce_address: str | None = key(MAILBOX, default=None, shown="`LIST-bounces@DOMAIN`")
    """The envelope sender of the list's copies, so members' bounces come back to the list."""
    description: str = key(STRING, default="")
    """Shown in the `List-Id` header (RFC 2919) before the list's id."""
    owner: tuple[str, ...] | None = key(TARGETS, default=None, shown="the postmaster")
    """Who receives mail for `LIST-request@DOMAIN` and the bounce address (members' bounces
    and unsubscribe requests)."""


@table
class SrsSettings:
    enabled: bool = key(BOOLEAN, default=False)
    """Rewrite the envelope sender of mail a local alias forwards to a remote address (SRS),
    so the next hop's SPF check passes; bounces to the rewritten address are sent on to the
    original sender. See [local-delivery.md](local-delivery.md#forwarding-and-srs)."""
    domain: str | None = key(DOMAIN, default=None, shown="none: `[server] hostname`")
    """The domain of the rewritten senders; its MX must be this server. Mail to its SRS
    addresses is accepted from anyone (and refused when the address is forged or old)."""
    secret_file: Path = key(PATH, default="var/srs-secret")
    """The key the rewritten addresses are signed with, made (mode 0600) at the first start.
    Keep it across reinstalls: bounces to addresses signed with a lost key are refused."""
    max_age: float = key(DUR, default="21d")
    """How long a rewritten address is honoured for bounces."""


@table
class BounceDomainSettings:
    """A domain whose mail is bounces and complaints for this server to consume
    (``[bounce-domain."bounce.example.com"]``); see [feedback.md](feedback.md)."""

    verp: bool = key(BOOLEAN, default=False)
    """Rewrite the envelope sender `local@DOMAIN` of single-recipient mail to
    `local+TOKEN@DOMAIN`, where the signed TOKEN names the recipient (and the job), so any
    bounce to it is tied to its recipient, even one that is not a standard DSN."""
    secret_file: Path = key(PATH, default="var/verp-secret")
    """The key VERP tokens are signed with, made (mode 0600) at the first start. Keep it:
    bounces to tokens signed with a lost key are not attributed."""


@table
class WebhookSettings:
    """A URL the delivery events are POSTed to (``[[webhook]]``); see
    [webhooks.md](webhooks.md)."""

    name: str = key(NAME)
    """The webhook's name, unique: its queue is kept in `[server] state-dir`/webhooks/NAME/."""
    url: str = key(URL)
    """Where the batches are POSTed (a JSON array of events)."""
    secret_file: Path = key(PATH)
    """The HMAC-SHA256 key of the `X-Outrider-Signature` header, made (32 random bytes in
    hex, mode 0600) at the first start if missing; give the receiver the same file."""
    events: tuple[str, ...] = key(EVENTS, default=list(WEBHOOK_EVENTS), shown="every kind")
    """The event kinds sent: `delivered`, `bounced`, `deferred`, `expired`, `suppressed`,
    `complained`, `unsubscribed`, `backoff`, `backoff-end`."""
    batch_size: int = key(integer(1, 10000), default=100)
    """Most events in one POST."""
    batch_interval: float = key(DUR_0, default="1s")
    """How long a batch waits to fill before it is sent anyway."""
    timeout: float = key(DUR, default="10s")
    """A POST not answered within this is failed and retried."""
    max_age: float = key(DUR, default="3d")
    """Queued events older than this are dropped (logged) rather than sent."""
    max_queue_size: int = key(SIZE, default="1G")
    """The on-disk queue's cap; past it the oldest events are dropped (logged)."""
    headers: tuple[tuple[str, str], ...] = key(HEADERS, default={}, shown="none")
    """Extra HTTP headers sent with each POST, e.g. `{ Authorization = "Bearer …" }`."""


@table
class EventLogSettings:
    file: Path | None = key(PATH, default=None, shown="none: no event log")
    """Append every event (those of webhooks and more: received, queue, done) as one JSON
    object per line to this file; flushed within a second, reopened on reload (SIGHUP) so
    logrotate can move it. See [webhooks.md](webhooks.md#the-event-log)."""


@table
class BounceCategorySettings:
    rules_file: Path | None = key(FILE, default=None, shown="none: the shipped rules only")
    """More reply-text rules for the bounce categories, one `/regex/ category` per line (`#`
    comments), asked before the shipped ones; read at start and on reload. See
    [bounces.md](bounces.md#bounce-categories)."""


DKIM_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
HEADER_NAME = Kind(
    lambda v: _header_name(v), "header field name", {"type": "string", "pattern": "^[!-9;-~]+$"}
)


def _header_name(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[!-9;-~]+", value):
        raise Invalid([((), f"expected a header field name, got {value!r}")])
    return value.lower()


@table
class DkimSettings:
    """One DKIM signing key (``[[dkim]]``); several per domain sign together (RSA and
    Ed25519, RFC 8463). See [dkim.md](dkim.md)."""

    domain: str = key(DOMAIN)
    """The signing domain (`d=`): mail whose From address is at this domain is signed."""
    selector: str = key(NAME)
    """The selector (`s=`): the public key is published at `SELECTOR._domainkey.DOMAIN`."""
    key_file: Path = key(FILE)
    """The private key, PEM (PKCS#8 or traditional, unencrypted), as written by `outrider dkim
    keygen`. Read when the config is loaded."""
    algorithm: str = key(choice(DKIM_ALGORITHMS), default="rsa-sha256")
    """The key's algorithm; an Ed25519 key needs `"ed25519-sha256"`."""
    headers: tuple[str, ...] | None = key(
        array(HEADER_NAME, "header field names", non_empty=True),
        default=None,
        shown="From, To, Cc, Subject, Date, Message-ID, Reply-To, MIME and list headers",
    )
    """The header fields to sign when present (must include `From`). From, Subject,
    List-Unsubscribe and List-Unsubscribe-Post are always listed once more than they occur,
    so nobody can add one later."""
    subdomains: bool = key(BOOLEAN, default=False)
    """Also sign mail From any subdomain of `domain` that has no `[[dkim]]` entry of its own,
    with `d=` this domain (DMARC's relaxed alignment accepts it)."""
    private_key: Any = field(default=None, repr=False, compare=False)  # loaded by the loader


@table
class UnsubscribeSettings:
    """One-click unsubscribe (RFC 8058); see [unsubscribe.md](unsubscribe.md). Set `url`
    or `mailto` (or both) to turn it on."""

    url: str | None = key(URL, default=None, shown="none")
    """The public base URL that reaches the HTTP listener's `/unsubscribe/` path, usually
    through a reverse proxy, e.g. `"https://news.example.com/unsubscribe"`; the token is
    appended as one more path segment."""
    mailto: str | None = key(MAILBOX, default=None, shown="none")
    """An address at a bounce domain (`[bounce-domain."…"]`) for `mailto:` unsubscribes: the
    header then also carries `<mailto:ADDRESS?subject=unsubscribe:TOKEN>`."""
    secret_file: Path = key(PATH, default="var/unsubscribe-secret")
    """The key the tokens are signed with, made (mode 0600) at the first start. Keep it:
    links signed with a lost key stop working."""
    sender_domains: tuple[str, ...] = key(array(DOMAIN, "domains"), default=[])
    """Envelope-sender (MAIL FROM) domains whose single-recipient mail always gets the
    List-Unsubscribe headers; the injection API's `"unsubscribe"` and the SMTP header
    `X-Outrider-Unsubscribe` decide per message."""
    max_age: float | None = key(DUR, default=None, shown="none: links never expire")
    """How long an unsubscribe link is honoured after the mail was sent."""
    page_text: str = key(STRING, default="")
    """A line shown on the unsubscribe page (e.g. who sends the mail)."""

    @property
    def enabled(self) -> bool:
        return self.url is not None or self.mailto is not None


@table
class ClusterSettings:
    """Several nodes sharing their delivery limits through Redis; see
    [cluster.md](cluster.md). Without `redis` nothing is shared and no Redis code runs."""

    redis: str | None = key(REDIS_URL, default=None, shown="none: this node alone")
    """The Redis server every node uses, e.g. `"redis://10.0.0.5:6379/0"`; `rediss://` for TLS.
    Then `max-smtp-out`, `max-msg-rate` and `max-connect-rate` of each delivery queue are limits
    for all the nodes together."""
    node_name: str = key(NODE_NAME, factory=lambda: _node_name(), shown="the host name")
    """This node's name in Redis (its connection leases and heartbeat); unique per node."""
    key_prefix: str = key(STRING, default="outrider:")
    """Prefix of every Redis key, so that several clusters can share one Redis."""
    password_file: Path | None = key(FILE, default=None, shown="none")
    """A file holding the Redis password (first line; `AUTH`), kept out of the config file."""
    tls_ca_file: Path | None = key(FILE, default=None, shown=_SYSTEM_CAS)
    """CA bundle (PEM) the Redis server's certificate must chain to (`rediss://`)."""
    lease_time: float = key(duration(positive=True), default="15s")
    """How long a connection lease lasts unless renewed (every third of it); the connections of
    a node that died are free again after at most this long."""
    timeout: float = key(DUR, default="200ms")
    """Longest wait for one Redis call; a slower or failed call makes the node use its local
    fallback limits until Redis answers again."""


def _node_name() -> str:
    name = socket.gethostname().split(".")[0] or "node"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:100]


# The top-level tables, in file order: TOML name -> (declaring class, shape), where the
# shape is "table" ([name]), "array" ([[name]]) or "named" ([name."NAME"]).
TABLES: Mapping[str, tuple[type | None, str]] = {
    "server": (ServerSettings, "table"),
    "dns": (DnsSettings, "table"),
    "listener": (ListenerSettings, "array"),
    "relay": (RelaySettings, "table"),
    "domain": (DomainPolicy, "named"),
    "domain-macro": (None, "table"),  # macro name -> array of domains
    "virtual-mta": (VirtualMta, "named"),
    "virtual-mta-pool": (VmtaPool, "named"),
    "smtp-pattern-list": (PatternList, "named"),
    "sender-domain": (SenderDomainSettings, "named"),
    "auth": (AuthSettings, "table"),
    "mta-sts": (MtaStsSettings, "table"),
    "http": (HttpSettings, "table"),
    "accounting": (AccountingSettings, "table"),
    "suppression": (SuppressionSettings, "table"),
    "local-domain": (LocalDomainSettings, "named"),
    "list": (ListSettings, "named"),
    "srs": (SrsSettings, "table"),
    "bounce-domain": (BounceDomainSettings, "named"),
    "webhook": (WebhookSettings, "array"),
    "event-log": (EventLogSettings, "table"),
    "bounce-categories": (BounceCategorySettings, "table"),
    "dkim": (DkimSettings, "array"),
    "unsubscribe": (UnsubscribeSettings, "table"),
    "cluster": (ClusterSettings, "table"),
}
# Every table of keys, for known_keys() and docs/config.md: "smtp-pattern-list.rules" is one rule.
DECLARED: Mapping[str, type] = {n: c for n, (c, _) in TABLES.items() if c is not None} | {
    "smtp-pattern-list.rules": PatternRule
}
MACRO = array(DOMAIN, "domains", non_empty=True)  # the value of a [domain-macro] key


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration.

    ``domains`` holds *effective* global policies for ``"*"`` and for every
    exact domain table. :meth:`policy_for` is the lookup to use: it also applies
    wildcard and macro tables and virtual-MTA overrides. ``domain_layers`` is
    the raw material; when it is not given it is derived from ``domains``.
    ``virtual_mtas`` always contains ``"default"``.
    """

    source: Path | None
    server: ServerSettings
    dns: DnsSettings
    listeners: tuple[ListenerSettings, ...]
    relay: RelaySettings
    domains: Mapping[str, DomainPolicy] = field(
        default_factory=lambda: MappingProxyType({DEFAULT_POLICY_KEY: DomainPolicy()})
    )
    domain_macros: Mapping[str, frozenset[str]] = field(default_factory=empty)
    domain_layers: DomainLayers | None = None
    virtual_mtas: Mapping[str, VirtualMta] = field(default_factory=empty)
    vmta_pools: Mapping[str, VmtaPool] = field(default_factory=empty)
    pattern_lists: Mapping[str, tuple[PatternRule, ...]] = field(default_factory=empty)
    sender_domains: Mapping[str, SenderDomainSettings] = field(default_factory=empty)
    auth: AuthSettings = field(default_factory=AuthSettings)
    mta_sts: MtaStsSettings = field(default_factory=MtaStsSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    accounting: AccountingSettings = field(default_factory=AccountingSettings)
    suppression: SuppressionSettings = field(default_factory=SuppressionSettings)
    local_domains: Mapping[str, LocalDomainSettings] = field(default_factory=empty)
    lists: Mapping[str, ListSettings] = field(default_factory=empty)
    srs: SrsSettings = field(default_factory=SrsSettings)
    bounce_domains: Mapping[str, BounceDomainSettings] = field(default_factory=empty)
    webhooks: tuple[WebhookSettings, ...] = ()
    event_log: EventLogSettings = field(default_factory=EventLogSettings)
    bounce_categories: BounceCategorySettings = field(default_factory=BounceCategorySettings)
    dkim: tuple[DkimSettings, ...] = ()
    unsubscribe: UnsubscribeSettings = field(default_factory=UnsubscribeSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    _macro_of: Mapping[str, str] = field(init=False, repr=False, compare=False)
    _policy_cache: dict[tuple[str, str | None], DomainPolicy] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        if self.domain_layers is None:
            setattr_(self, "domain_layers", DomainLayers.from_policies(self.domains))
        if DEFAULT_VMTA not in self.virtual_mtas:
            vmtas = {DEFAULT_VMTA: VirtualMta(DEFAULT_VMTA, None, self.server.hostname)}
            vmtas.update(self.virtual_mtas)
            setattr_(self, "virtual_mtas", MappingProxyType(vmtas))
        macro_of = {
            domain: name for name, members in self.domain_macros.items() for domain in members
        }
        setattr_(self, "_macro_of", macro_of)
        setattr_(self, "_policy_cache", {})

    def policy_for(self, domain: str, vmta: str | None = None) -> DomainPolicy:
        """Effective policy for a recipient domain, optionally as sent by virtual MTA ``vmta``.

        Order, later wins key by key: built-in defaults, ``"*"``, the longest matching
        wildcard, the domain's macro, the exact table; then the same for ``vmta``'s
        own domain tables. Case-insensitive, trailing dot ignored. Raises
        :class:`KeyError` for an unknown virtual MTA (pools must be resolved first).
        """
        cache = self._policy_cache
        key = (domain, vmta)
        policy = cache.get(key)
        if policy is not None:
            return policy
        name = normalize_lookup(domain)
        layers = self.domain_layers
        assert layers is not None  # filled by __post_init__
        if vmta is None:
            scopes: tuple[DomainLayers, ...] = (layers,)
        else:
            scopes = (layers, self.virtual_mtas[vmta].domain_overrides)
        policy = resolve(BUILTIN_POLICY, scopes, name, self._macro_of.get(name))
        if len(cache) >= _POLICY_CACHE_MAX:
            del cache[next(iter(cache))]
        cache[key] = policy
        return policy

    def is_relay_domain(self, domain: str) -> bool:
        """True if mail to ``domain`` is accepted from any client."""
        domains = self.relay.domains
        return domain in domains or normalize_lookup(domain) in domains
