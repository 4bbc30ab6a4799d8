"""Loading valid configs, defaults, the policy merge rule, and located errors."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import textwrap
from pathlib import Path

import pytest

from outrider.config.loader import known_keys, load_config, parse_config
from outrider.config.model import (
    AuthSettings,
    Config,
    ConfigError,
    DnsSettings,
    DomainPolicy,
    ListenerSettings,
    MtaStsSettings,
    Problem,
    RelaySettings,
    SenderDomainSettings,
    ServerSettings,
    default_receiver_processes,
)

LISTENER = '[[listener]]\naddress = "127.0.0.1:2525"\n'


@pytest.fixture(autouse=True)
def _no_resolver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The default hostname comes from getfqdn(), which may query DNS: pin it."""
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "fqdn.example.test")
    monkeypatch.chdir(tmp_path)


def parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text), "t.toml")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    lines = str(info.value).splitlines()
    assert lines == [str(p) for p in info.value.problems]
    return lines


# --------------------------------------------------------------------------- valid configs

FULL = """\
[server]
hostname = "MTA.Example.Test."
spool-dir = "spool"
log-dir = "/var/log/outrider"
shutdown-timeout = "1m"
receiver-processes = 4
max-delivery-concurrency = 2000
pid-file = "run/outrider.pid"

[dns]
nameservers = ["127.0.0.1:5353", "::1", "[::1]:5300", "127.0.0.53"]
timeout = "2500ms"

[[listener]]
address = "127.0.0.1:2525"
relay-networks = ["127.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
max-message-size = "10M"
max-rcpt-per-message = 50
max-errors = 3
command-timeout = "1m"
data-timeout = 120
max-connections = 10
banner = "ESMTP test"

[[listener]]
address = "[::1]:2525"
relay-networks = []

[relay]
domains = ["Example.ORG", "example.com."]

[domain."*"]
retry-after = ["1m", "2m"]
bounce-after = "2d"
max-smtp-out = 7
max-msg-per-connection = 100
connect-timeout = "10s"
smtp-greeting-timeout = "1m"
smtp-command-timeout = "2m"
smtp-data-init-timeout = "3m"
smtp-data-block-timeout = "4m"
smtp-data-termination-timeout = "5m"
connection-idle-timeout = 0
use-starttls = false

[domain."example.net"]
route = "127.0.0.2:2600"
max-smtp-out = 2
"""


def test_full_config(tmp_path: Path) -> None:
    config = parse(FULL)
    assert config.source is None
    assert config.server == ServerSettings(
        hostname="mta.example.test",
        spool_dir=tmp_path / "spool",
        log_dir=Path("/var/log/outrider"),
        shutdown_timeout=60.0,
        receiver_processes=4,
        max_delivery_concurrency=2000,
        pid_file=tmp_path / "run/outrider.pid",
        state_dir=tmp_path / "var/state",
    )
    assert config.dns == DnsSettings(
        nameservers=(("127.0.0.1", 5353), ("::1", 53), ("::1", 5300), ("127.0.0.53", 53)),
        timeout=2.5,
    )
    assert config.listeners == (
        ListenerSettings(
            address=("127.0.0.1", 2525),
            relay_networks=(
                ipaddress.ip_network("127.0.0.0/8"),
                ipaddress.ip_network("192.0.2.7/32"),
                ipaddress.ip_network("2001:db8::/32"),
            ),
            max_message_size=10 * 1024 * 1024,
            max_rcpt_per_message=50,
            max_errors=3,
            command_timeout=60.0,
            data_timeout=120.0,
            max_connections=10,
            banner="ESMTP test",
        ),
        ListenerSettings(address=("::1", 2525), relay_networks=()),
    )
    assert config.relay == RelaySettings(domains=frozenset({"example.org", "example.com"}))
    star = DomainPolicy(
        retry_after=(60.0, 120.0),
        bounce_after=172800.0,
        route=None,
        max_smtp_out=7,
        max_msg_per_connection=100,
        connect_timeout=10.0,
        smtp_greeting_timeout=60.0,
        smtp_command_timeout=120.0,
        smtp_data_init_timeout=180.0,
        smtp_data_block_timeout=240.0,
        smtp_data_termination_timeout=300.0,
        connection_idle_timeout=0.0,
        use_starttls=False,
    )
    assert dict(config.domains) == {
        "*": star,
        "example.net": dataclasses.replace(star, route=("127.0.0.2", 2600), max_smtp_out=2),
    }


def test_every_default(tmp_path: Path) -> None:
    config = parse(LISTENER)
    assert config.server == ServerSettings(
        hostname="fqdn.example.test",
        spool_dir=tmp_path / "var/spool",
        log_dir=tmp_path / "var/log",
        shutdown_timeout=30.0,
        receiver_processes=default_receiver_processes(),
        max_delivery_concurrency=500,
        pid_file=None,
        default_virtual_mta="default",
        state_dir=tmp_path / "var/state",
    )
    assert config.server.spool_dir.is_absolute()
    assert config.dns == DnsSettings(nameservers=(), timeout=5.0)
    assert config.listeners == (
        ListenerSettings(
            address=("127.0.0.1", 2525),
            relay_networks=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
            max_message_size=52428800,
            max_rcpt_per_message=1000,
            max_errors=20,
            command_timeout=300.0,
            data_timeout=600.0,
            max_connections=1000,
            banner="ESMTP Outrider",
        ),
    )
    assert config.relay == RelaySettings(domains=frozenset())
    assert dict(config.domains) == {
        "*": DomainPolicy(
            retry_after=(300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0),
            bounce_after=388800.0,
            route=None,
            max_smtp_out=20,
            max_msg_per_connection=0,
            connect_timeout=30.0,
            smtp_greeting_timeout=300.0,
            smtp_command_timeout=300.0,
            smtp_data_init_timeout=120.0,
            smtp_data_block_timeout=180.0,
            smtp_data_termination_timeout=600.0,
            connection_idle_timeout=5.0,
            use_starttls=True,
        )
    }


def test_config_is_immutable() -> None:
    config = parse(LISTENER)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server = ServerSettings(hostname="x")  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.domains["new"] = DomainPolicy()  # type: ignore[index]


def test_listener_port_zero_may_repeat() -> None:
    config = parse('[[listener]]\naddress = "127.0.0.1:0"\n[[listener]]\naddress = "127.0.0.1:0"\n')
    assert [lst.address for lst in config.listeners] == [("127.0.0.1", 0)] * 2


def test_inline_listener_array_is_accepted() -> None:
    config = parse('listener = [{ address = "127.0.0.1:25" }, { address = "127.0.0.1:26" }]\n')
    assert [lst.address[1] for lst in config.listeners] == [25, 26]


def test_known_keys_match_the_dataclasses() -> None:
    keys = known_keys()
    assert set(keys) == {
        "server",
        "dns",
        "listener",
        "relay",
        "domain",
        "virtual-mta",
        "virtual-mta-pool",
        "smtp-pattern-list",
        "smtp-pattern-list.rules",
        "sender-domain",
        "auth",
        "mta-sts",
        "http",
        "accounting",
        "suppression",
        "local-domain",
        "list",
        "srs",
        "bounce-domain",
        "webhook",
        "event-log",
        "bounce-categories",
        "dkim",
        "unsubscribe",
        "cluster",
    }
    assert keys["virtual-mta"] == ("smtp-source-host",)
    assert keys["virtual-mta-pool"] == ("virtual-mtas", "weights")
    assert keys["smtp-pattern-list.rules"] == ("reply", "action", "phase")
    for table, cls in [
        ("server", ServerSettings),
        ("dns", DnsSettings),
        ("listener", ListenerSettings),
        ("relay", RelaySettings),
        ("domain", DomainPolicy),
        ("sender-domain", SenderDomainSettings),
        ("auth", AuthSettings),
        ("mta-sts", MtaStsSettings),
    ]:
        fields = {f.name for f in dataclasses.fields(cls)}
        assert {k.replace("-", "_") for k in keys[table]} == fields


# --------------------------------------------------------------------------- policy merging

MERGE = (
    LISTENER
    + """
[domain."*"]
retry-after = ["1m"]
max-smtp-out = 5
use-starttls = false

[domain."example.net"]
route = "smart.example"

[domain."Other.Example."]
max-smtp-out = 20
retry-after = ["10s", "20s"]

[domain."bücher.example"]
max-smtp-out = 1
"""
)


def test_policy_for_merges_exact_over_star_over_builtin() -> None:
    config = parse(MERGE)
    star = config.policy_for("unknown.example")
    assert star.retry_after == (60.0,)
    assert star.max_smtp_out == 5
    assert star.use_starttls is False
    assert star.bounce_after == 388800.0  # built-in

    net = config.policy_for("example.net")
    assert net.route == ("smart.example", 25)
    assert net.max_smtp_out == 5  # from "*", not the built-in 20
    assert net.retry_after == (60.0,)
    assert net.use_starttls is False

    other = config.policy_for("other.example")
    assert other.max_smtp_out == 20  # explicitly set, equal to the built-in: still wins
    assert other.retry_after == (10.0, 20.0)
    assert other.route is None


@pytest.mark.parametrize("name", ["EXAMPLE.NET", "example.net.", "Example.Net.", "example.net"])
def test_policy_for_is_case_insensitive_and_ignores_trailing_dot(name: str) -> None:
    assert parse(MERGE).policy_for(name).route == ("smart.example", 25)


def test_policy_for_idn_and_subdomains() -> None:
    config = parse(MERGE)
    assert config.policy_for("BÜCHER.example").max_smtp_out == 1
    assert config.policy_for("xn--bcher-kva.example").max_smtp_out == 1
    assert config.policy_for("mail.example.net").route is None  # no subdomain inheritance


def test_policy_for_without_star_table_uses_builtin_defaults() -> None:
    config = parse(LISTENER + '[domain."example.net"]\nmax-smtp-out = 3\n')
    assert config.policy_for("x.example") == DomainPolicy()
    assert config.policy_for("example.net") == DomainPolicy(max_smtp_out=3)
    bare = Config(None, ServerSettings(hostname="h"), DnsSettings(), (), RelaySettings(), {})
    assert bare.policy_for("x.example") == DomainPolicy()


def test_relay_helpers() -> None:
    config = parse(FULL)
    listener = config.listeners[0]
    assert listener.may_relay("127.0.0.9")
    assert listener.may_relay("192.0.2.7")
    assert listener.may_relay("::ffff:192.0.2.7")
    assert listener.may_relay("2001:db8::5")
    assert not listener.may_relay("192.0.2.8")
    assert not listener.may_relay("not an ip")
    assert not config.listeners[1].may_relay("127.0.0.1")
    assert config.is_relay_domain("EXAMPLE.org.")
    assert config.is_relay_domain("example.com")
    assert not config.is_relay_domain("example.net")


# --------------------------------------------------------------------------- errors


def test_problem_and_error_formatting() -> None:
    problem = Problem("a.toml", 3, "server.hostname", "bad")
    assert str(problem) == "a.toml:3: server.hostname: bad"
    error = ConfigError([problem, Problem("a.toml", 5, "dns", "worse")])
    assert str(error) == "a.toml:3: server.hostname: bad\na.toml:5: dns: worse"


def test_unknown_keys_with_suggestions() -> None:
    assert errors(
        """\
        [server]
        hostnme = "x"
        [[listener]]
        address = "127.0.0.1:25"
        max_errors = 3
        colour = "blue"
        [domain."*"]
        retry-afer = ["5m"]
        retry_after = ["5m"]
        [listeners]
        """
    ) == [
        "t.toml:2: server.hostnme: unknown key 'hostnme' (did you mean 'hostname'?)",
        "t.toml:5: listener[0].max_errors: unknown key 'max_errors' (did you mean 'max-errors'?)",
        "t.toml:6: listener[0].colour: unknown key 'colour'",
        "t.toml:8: domain.\"*\".retry-afer: unknown key 'retry-afer' (did you mean 'retry-after'?)",
        "t.toml:9: domain.\"*\".retry_after: unknown key 'retry_after' "
        "(did you mean 'retry-after'?)",
        "t.toml:10: listeners: unknown key 'listeners' (did you mean 'listener'?)",
    ]


def test_unquoted_dotted_domain_gets_a_hint() -> None:
    assert errors(
        LISTENER
        + """\
        [domain.mail.example.net]
        route = "x"
        """
    ) == [
        "t.toml:3: domain.mail.example: unknown key 'example'; "
        'quote domain names that contain dots: [domain."mail.example"]'
    ]


def test_policy_keys_directly_under_domain() -> None:
    assert errors(LISTENER + '[domain]\nbounce-after = "1d"\n') == [
        "t.toml:4: domain.bounce-after: expected a table, got string; policy keys go in "
        '[domain."*"] or [domain."NAME"], not [domain]'
    ]


def test_wrong_types() -> None:
    assert errors(
        """\
        dns = 5
        [server]
        hostname = 5
        receiver-processes = "2"
        shutdown-timeout = true
        pid-file = ["x"]
        [[listener]]
        address = 2525
        max-errors = true
        max-message-size = 1.5
        banner = "caf\u00e9"
        relay-networks = "127.0.0.0/8"
        [relay]
        domains = "example.org"
        [domain."*"]
        use-starttls = "yes"
        retry-after = "5m"
        bounce-after = 1979-05-27
        """
    ) == [
        "t.toml:1: dns: expected a table, got integer",
        "t.toml:3: server.hostname: expected a string, got integer",
        "t.toml:4: server.receiver-processes: expected an integer, got string",
        "t.toml:5: server.shutdown-timeout: expected a duration "
        "(use e.g. '30s', '5m', '1h30m', '4d12h' or integer seconds), got boolean",
        "t.toml:6: server.pid-file: expected a string, got array",
        "t.toml:8: listener[0].address: expected a string, got integer",
        "t.toml:9: listener[0].max-errors: expected an integer, got boolean",
        "t.toml:10: listener[0].max-message-size: expected a size "
        "(use e.g. '10k', '50M', '1G' or integer bytes), got float",
        "t.toml:11: listener[0].banner: must be ASCII (it is sent in the SMTP greeting)",
        "t.toml:12: listener[0].relay-networks: expected an array, got string",
        "t.toml:14: relay.domains: expected an array, got string",
        't.toml:16: domain."*".use-starttls: expected a boolean (true or false), got string',
        't.toml:17: domain."*".retry-after: expected an array, got string',
        't.toml:18: domain."*".bounce-after: expected a duration '
        "(use e.g. '30s', '5m', '1h30m', '4d12h' or integer seconds), got date/time",
    ]


def test_bad_values_are_located_per_array_element() -> None:
    assert errors(
        """\
        [dns]
        nameservers = [
            "127.0.0.1",
            "dns.example.net",
            "127.0.0.1:0",
        ]
        timeout = "0s"
        [[listener]]
        address = "127.0.0.1"
        relay-networks = ["10.1.2.3/8", "10.0.0.0/8", "nonsense"]
        max-message-size = "50X"
        command-timeout = "5 minutes"
        data-timeout = "-1m"
        [relay]
        domains = ["example.org", "bad_domain.example"]
        [domain."*"]
        retry-after = [
            "5m",
            "10x",
            0,
        ]
        route = "[::1]:99999"
        """
    ) == [
        "t.toml:4: dns.nameservers[1]: 'dns.example.net' in 'dns.example.net' is not an IP address",
        "t.toml:5: dns.nameservers[2]: port 0 in '127.0.0.1:0' is out of range 1-65535",
        "t.toml:7: dns.timeout: must be greater than zero, got '0s'",
        "t.toml:9: listener[0].address: missing port in '127.0.0.1'; use 'host:port'",
        "t.toml:10: listener[0].relay-networks[0]: network '10.1.2.3/8' has host bits set "
        "(did you mean '10.0.0.0/8'?)",
        "t.toml:10: listener[0].relay-networks[2]: invalid network 'nonsense': "
        "'nonsense' does not appear to be an IPv4 or IPv6 network",
        "t.toml:11: listener[0].max-message-size: invalid size '50X'; "
        "use e.g. '10k', '50M', '1G' or integer bytes",
        "t.toml:12: listener[0].command-timeout: invalid duration '5 minutes'; "
        "use e.g. '30s', '5m', '1h30m', '4d12h' or integer seconds",
        "t.toml:13: listener[0].data-timeout: duration must not be negative, got '-1m'",
        "t.toml:15: relay.domains[1]: invalid domain name 'bad_domain.example': label "
        "'bad_domain' must be 1-63 letters, digits or hyphens, "
        "not starting or ending with a hyphen",
        "t.toml:19: domain.\"*\".retry-after[1]: invalid duration '10x'; "
        "use e.g. '30s', '5m', '1h30m', '4d12h' or integer seconds",
        't.toml:20: domain."*".retry-after[2]: must be greater than zero, got 0',
        "t.toml:22: domain.\"*\".route: port 99999 in '[::1]:99999' is out of range 1-65535",
    ]


def test_negative_and_too_small_numbers() -> None:
    assert errors(
        """\
        [server]
        receiver-processes = -1
        max-delivery-concurrency = -5
        [[listener]]
        address = "127.0.0.1:25"
        max-rcpt-per-message = 0
        max-connections = -1
        max-message-size = 0
        [domain."*"]
        max-msg-per-connection = -1
        max-smtp-out = 0
        bounce-after = -3
        retry-after = []
        """
    ) == [
        "t.toml:2: server.receiver-processes: must not be negative, got -1",
        "t.toml:3: server.max-delivery-concurrency: must not be negative, got -5",
        "t.toml:6: listener[0].max-rcpt-per-message: must be at least 1, got 0",
        "t.toml:7: listener[0].max-connections: must not be negative, got -1",
        "t.toml:8: listener[0].max-message-size: must be greater than zero, got 0",
        't.toml:10: domain."*".max-msg-per-connection: must not be negative, got -1',
        't.toml:11: domain."*".max-smtp-out: must be at least 1, got 0',
        't.toml:12: domain."*".bounce-after: duration must not be negative, got -3',
        't.toml:13: domain."*".retry-after: must not be empty',
    ]


def test_no_listener() -> None:
    assert errors('[server]\nhostname = "h.example"\n') == [
        "t.toml:1: listener: at least one [[listener]] table is required"
    ]
    assert errors("\n\nlistener = []\n") == [
        "t.toml:3: listener: at least one [[listener]] table is required"
    ]


def test_listener_shape_errors() -> None:
    assert errors('[listener]\naddress = "127.0.0.1:25"\n') == [
        "t.toml:1: listener: expected an array of tables ([[listener]]), got table"
    ]
    assert errors('listener = ["127.0.0.1:25"]\n') == [
        "t.toml:1: listener[0]: expected a table, got string"
    ]
    assert errors(LISTENER + "\n[[listener]]\nmax-errors = 5\n") == [
        "t.toml:4: listener[1]: missing required key 'address'"
    ]


def test_duplicate_listener_addresses() -> None:
    assert errors(
        """\
        [[listener]]
        address = "[::1]:25"
        [[listener]]
        address = "127.0.0.1:25"
        [[listener]]
        address = "[0:0::1]:25"
        [[listener]]
        address = "127.0.0.1:25"
        """
    ) == [
        "t.toml:6: listener[2].address: duplicate listener address '[0:0::1]:25' "
        "(also listener[0].address)",
        "t.toml:8: listener[3].address: duplicate listener address '127.0.0.1:25' "
        "(also listener[1].address)",
    ]


def test_bad_and_duplicate_domain_tables() -> None:
    assert errors(
        LISTENER
        + """\
        [domain."Example.NET"]
        max-smtp-out = 1
        [domain."example.net."]
        max-smtp-out = 2
        [domain."-bad-.example"]
        route = "x"
        """
    ) == [
        't.toml:5: domain."example.net.": same domain as domain."Example.NET"; '
        "merge the two tables",
        "t.toml:7: domain.\"-bad-.example\": invalid domain name '-bad-.example': label "
        "'-bad-' must be 1-63 letters, digits or hyphens, not starting or ending with a hyphen",
    ]


def test_banner_and_hostname_values() -> None:
    assert errors(
        """\
        [server]
        hostname = "not a host"
        [[listener]]
        address = "127.0.0.1:25"
        banner = "two\\nlines"
        """
    ) == [
        "t.toml:2: server.hostname: invalid domain name 'not a host': label 'not a host' "
        "must be 1-63 letters, digits or hyphens, not starting or ending with a hyphen",
        "t.toml:5: listener[0].banner: must be a single line",
    ]


def test_many_problems_are_all_reported_in_file_order() -> None:
    lines = errors(
        """\
        [domain."*"]
        max-smtp-out = -1
        [server]
        spool-dir = ""
        shutdown-timeout = "forever"
        [relay]
        domain = ["x.example"]
        """
    )
    assert lines == [
        "t.toml:1: listener: at least one [[listener]] table is required",
        't.toml:2: domain."*".max-smtp-out: must not be negative, got -1',
        "t.toml:4: server.spool-dir: must be a non-empty path",
        "t.toml:5: server.shutdown-timeout: invalid duration 'forever'; "
        "use e.g. '30s', '5m', '1h30m', '4d12h' or integer seconds",
        "t.toml:7: relay.domain: unknown key 'domain' (did you mean 'domains'?)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[server]\nhostname = "x"\nspool-dir = \n', "t.toml:3: syntax: Invalid value (column 13)"),
        (
            "[server\n",
            "t.toml:1: syntax: Expected ']' at the end of a table declaration (column 8)",
        ),
        (
            LISTENER + "[[listener]]\n[a]\n[a]\n",
            "t.toml:5: syntax: Cannot declare ('a',) twice (column 3)",
        ),
        ('a = "x\n', "t.toml:1: syntax: Illegal character '\\n' (column 7)"),
        ('a = """x\n\n', "t.toml:2: syntax: Unterminated string (at end of file)"),
    ],
)
def test_syntax_errors_are_located(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.toml")
    assert [str(p) for p in info.value.problems] == [expected]


# --------------------------------------------------------------------------- files


def test_load_config_sets_source_and_filename(tmp_path: Path) -> None:
    path = tmp_path / "outrider.toml"
    path.write_text(LISTENER, encoding="utf-8")
    assert load_config(path).source == path
    assert load_config(str(path)).source == path
    path.write_text("bogus = 1\n" + LISTENER, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:1: bogus: unknown key 'bogus'"


def test_load_config_accepts_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + LISTENER.encode())
    assert load_config(path).listeners[0].address == ("127.0.0.1", 2525)


def test_load_config_unreadable_and_bad_encoding(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"{missing}:0: file: cannot read: No such file or directory"

    bad = tmp_path / "bad.toml"
    bad.write_bytes(LISTENER.encode() + b'banner = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value) == f"{bad}:3: encoding: not valid UTF-8: invalid start byte"


def test_receiver_processes_default_to_one_per_core_at_most_eight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for cores, expected in ((None, 1), (1, 1), (2, 2), (8, 8), (64, 8)):
        monkeypatch.setattr("outrider.config.model.os.cpu_count", lambda c=cores: c)
        assert parse(LISTENER).server.receiver_processes == expected
