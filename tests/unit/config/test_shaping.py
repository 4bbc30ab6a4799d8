"""Traffic shaping config: macros, wildcards, virtual MTAs, pools, pattern lists, policy_for."""

from __future__ import annotations

import re
import socket
import textwrap
from pathlib import Path

import pytest

from outrider.config.loader import parse_config
from outrider.config.model import (
    Config,
    ConfigError,
    DomainPolicy,
    PatternRule,
    SenderDomainSettings,
    VirtualMta,
    VmtaPool,
)
from outrider.config.units import Rate

LISTENER = '[[listener]]\naddress = "127.0.0.1:2525"\n'
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _pinned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "fqdn.example.test")
    monkeypatch.chdir(tmp_path)


def parse(text: str) -> Config:
    return parse_config(LISTENER + textwrap.dedent(text), "t.toml")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


# --------------------------------------------------------------------------- new domain keys


def test_new_domain_keys_defaults() -> None:
    policy = parse("").policy_for("example.org")
    assert policy == DomainPolicy()
    assert policy.max_rcpt_per_transaction == 1000
    assert policy.max_msg_rate is None
    assert policy.max_connect_rate is None
    assert policy.require_starttls is False
    assert policy.smtp_421_means_mx_unavailable is False
    assert policy.bounce_upon_no_mx is False
    assert policy.queue_priority == 50
    assert policy.mx_rollup is True
    assert policy.smtp_pattern_list is None
    assert policy.backoff_max_msg_rate is None
    assert policy.backoff_max_smtp_out == 1
    assert policy.backoff_retry_after == 3600.0
    assert policy.backoff_to_normal_after is None
    assert policy.backoff_to_normal_after_delivery is False
    assert policy.reenable_source_ip_after == 3600.0
    assert policy.tls_verify == "none"
    assert policy.tls_ca_file is None
    assert policy.mta_sts is True
    assert policy.smtp_port == 25


def test_new_domain_keys_parse(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x", encoding="ascii")
    policy = parse(
        """\
        [smtp-pattern-list.blocking]
        rules = [{ reply = "x", action = "defer" }]
        [domain."*"]
        max-rcpt-per-transaction = 50
        max-msg-rate = "600/h"
        max-connect-rate = "100/10m"
        require-starttls = true
        smtp-421-means-mx-unavailable = true
        bounce-upon-no-mx = true
        queue-priority = 100
        mx-rollup = false
        smtp-pattern-list = "blocking"
        backoff-max-msg-rate = "20/m"
        backoff-max-smtp-out = 3
        backoff-retry-after = "20m"
        backoff-to-normal-after = "2h"
        backoff-to-normal-after-delivery = true
        reenable-source-ip-after = "30m"
        tls-verify = "ca+hostname"
        tls-ca-file = "ca.pem"
        mta-sts = false
        """
    ).policy_for("example.org")
    assert policy == DomainPolicy(
        max_rcpt_per_transaction=50,
        max_msg_rate=Rate(600, 3600.0),
        max_connect_rate=Rate(100, 600.0),
        require_starttls=True,
        smtp_421_means_mx_unavailable=True,
        bounce_upon_no_mx=True,
        queue_priority=100,
        mx_rollup=False,
        smtp_pattern_list="blocking",
        backoff_max_msg_rate=Rate(20, 60.0),
        backoff_max_smtp_out=3,
        backoff_retry_after=1200.0,
        backoff_to_normal_after=7200.0,
        backoff_to_normal_after_delivery=True,
        reenable_source_ip_after=1800.0,
        tls_verify="ca+hostname",
        tls_ca_file=tmp_path / "ca.pem",
        mta_sts=False,
    )


def test_unlimited_and_never() -> None:
    policy = parse(
        """\
        [domain."*"]
        max-msg-rate = "unlimited"
        backoff-to-normal-after = "never"
        """
    ).policy_for("x.example")
    assert policy.max_msg_rate is None
    assert policy.backoff_to_normal_after is None


def test_new_domain_key_errors() -> None:
    assert errors(
        """\
        [domain."*"]
        max-rcpt-per-transaction = 0
        max-msg-rate = "600/fortnight"
        max-connect-rate = 5
        queue-priority = 101
        backoff-max-smtp-out = 0
        backoff-to-normal-after = "sometimes"
        tls-verify = "strict"
        tls-ca-file = "missing.pem"
        smtp-pattern-list = "nope"
        backoff-retry-after = 0
        mx-rollup = "yes"
        """
    ) == [
        't.toml:4: domain."*".max-rcpt-per-transaction: must be at least 1, got 0',
        "t.toml:5: domain.\"*\".max-msg-rate: invalid rate '600/fortnight'; use e.g. "
        "'600/h', '20/m', '5/s', '100/10m', '1000/1d' or 'unlimited'",
        't.toml:6: domain."*".max-connect-rate: expected a rate (use e.g. '
        "'600/h', '20/m', '5/s', '100/10m', '1000/1d' or 'unlimited'), got integer",
        't.toml:7: domain."*".queue-priority: must be from 0 to 100, got 101',
        't.toml:8: domain."*".backoff-max-smtp-out: must be at least 1, got 0',
        "t.toml:9: domain.\"*\".backoff-to-normal-after: invalid duration 'sometimes'; "
        "use e.g. '30s', '5m', '1h30m', '4d12h' or integer seconds",
        "t.toml:10: domain.\"*\".tls-verify: must be one of 'none', 'ca', 'ca+hostname', "
        "got 'strict'",
        f't.toml:11: domain."*".tls-ca-file: {Path.cwd() / "missing.pem"} does not exist',
        "t.toml:12: domain.\"*\".smtp-pattern-list: no smtp-pattern-list named 'nope'; "
        "define it as [smtp-pattern-list.NAME]",
        't.toml:13: domain."*".backoff-retry-after: must be greater than zero, got 0',
        't.toml:14: domain."*".mx-rollup: expected a boolean (true or false), got string',
    ]


# --------------------------------------------------------------------------- resolution order

LAYERED = """\
[domain-macro]
hotmail = ["hotmail.com", "Outlook.COM"]
other = ["other.example"]

[domain."*"]
max-smtp-out = 20
max-msg-rate = "1000/h"
queue-priority = 10

[domain."*.com"]
max-smtp-out = 10
queue-priority = 20

[domain."*.b.com"]
max-smtp-out = 7

[domain."$hotmail"]
max-msg-rate = "300/h"
queue-priority = 30

[domain."outlook.com"]
retry-after = ["10m"]
queue-priority = 40

[domain."b.com"]
bounce-upon-no-mx = true

[virtual-mta.warmup]
smtp-source-host = "192.0.2.20 warm.example.net"

[virtual-mta.warmup.domain."*"]
max-msg-rate = "50/h"

[virtual-mta.warmup.domain."*.com"]
max-connect-rate = "1/s"

[virtual-mta.warmup.domain."$hotmail"]
queue-priority = 90

[virtual-mta.warmup.domain."outlook.com"]
max-smtp-out = 1
"""


def test_resolution_order_exact_over_macro_over_wildcard_over_star() -> None:
    config = parse(LAYERED)
    org = config.policy_for("example.org")
    assert (org.max_smtp_out, org.max_msg_rate, org.queue_priority) == (
        20,
        Rate(1000, 3600.0),
        10,
    )
    com = config.policy_for("example.com")
    assert (com.max_smtp_out, com.max_msg_rate, com.queue_priority) == (
        10,
        Rate(1000, 3600.0),
        20,
    )
    hot = config.policy_for("hotmail.com")
    assert (hot.max_smtp_out, hot.max_msg_rate, hot.queue_priority) == (10, Rate(300, 3600.0), 30)
    out = config.policy_for("OUTLOOK.com.")
    assert (out.max_smtp_out, out.max_msg_rate, out.queue_priority, out.retry_after) == (
        10,
        Rate(300, 3600.0),
        40,
        (600.0,),
    )
    assert out.bounce_after == DomainPolicy().bounce_after  # built-in


def test_longest_wildcard_wins_at_any_depth_but_not_the_apex() -> None:
    config = parse(LAYERED)
    assert config.policy_for("a.b.com").max_smtp_out == 7
    assert config.policy_for("x.y.a.b.com").max_smtp_out == 7
    assert config.policy_for("c.com").max_smtp_out == 10
    apex = config.policy_for("b.com")
    assert apex.max_smtp_out == 10  # "*.b.com" does not match b.com; "*.com" does
    assert apex.bounce_upon_no_mx is True
    assert config.policy_for("a.b.com").bounce_upon_no_mx is False  # no subdomain inheritance
    assert config.policy_for("com").max_smtp_out == 20


def test_vmta_overrides_apply_on_top() -> None:
    config = parse(LAYERED)
    out = config.policy_for("outlook.com", "warmup")
    assert out.max_msg_rate == Rate(50, 3600.0)  # warmup "*" beats global macro
    assert out.max_connect_rate == Rate(1, 1.0)
    assert out.queue_priority == 90  # warmup macro beats global exact
    assert out.max_smtp_out == 1
    assert out.retry_after == (600.0,)  # global exact, untouched by warmup
    org = config.policy_for("example.org", "warmup")
    assert org.max_msg_rate == Rate(50, 3600.0)
    assert org.max_connect_rate is None
    assert config.policy_for("outlook.com", "default") == config.policy_for("outlook.com")
    with pytest.raises(KeyError):
        config.policy_for("outlook.com", "nonexistent")


def test_effective_domains_mapping_and_cache() -> None:
    config = parse(LAYERED)
    assert set(config.domains) == {"*", "outlook.com", "b.com"}
    assert config.domains["outlook.com"] == config.policy_for("outlook.com")
    first = config.policy_for("Example.COM")
    assert config.policy_for("Example.COM") is first
    assert config.domain_macros == {
        "hotmail": frozenset({"hotmail.com", "outlook.com"}),
        "other": frozenset({"other.example"}),
    }


def test_policy_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from outrider.config import model

    monkeypatch.setattr(model, "_POLICY_CACHE_MAX", 3)
    config = parse(LAYERED)
    for index in range(10):
        config.policy_for(f"d{index}.example")
    assert len(config._policy_cache) == 3
    assert config.policy_for("d9.example").max_smtp_out == 20


def test_macro_errors() -> None:
    assert errors(
        """\
        [domain-macro]
        microsoft = ["hotmail.com", "outlook.com"]
        msft = [
            "live.com",
            "Hotmail.com",
        ]
        empty = []
        "bad name" = ["x.example"]
        bad = ["-x-.example"]
        [domain."$yahooo"]
        max-smtp-out = 1
        [domain."$msft"]
        max-smtp-out = 1
        [domain."$micrsoft"]
        max-smtp-out = 2
        """
    ) == [
        "t.toml:7: domain-macro.msft[1]: domain 'hotmail.com' is in macros 'microsoft' and 'msft'",
        "t.toml:9: domain-macro.empty: must not be empty",
        "t.toml:10: domain-macro.\"bad name\": invalid name 'bad name'; use letters, digits, "
        "'-', '_' and '.', starting with a letter or digit",
        "t.toml:11: domain-macro.bad[0]: invalid domain name '-x-.example': label '-x-' must be "
        "1-63 letters, digits or hyphens, not starting or ending with a hyphen",
        "t.toml:12: domain.\"$yahooo\": no domain macro named 'yahooo'; "
        "define it in [domain-macro]",
        "t.toml:16: domain.\"$micrsoft\": no domain macro named 'micrsoft' "
        "(did you mean 'microsoft'?)",
    ]


def test_wildcard_and_duplicate_errors() -> None:
    assert errors(
        """\
        [domain."*.Example.com"]
        max-smtp-out = 1
        [domain."*.example.com."]
        max-smtp-out = 2
        [domain."a.*.com"]
        max-smtp-out = 3
        [domain."*example.com"]
        max-smtp-out = 4
        [domain."*.-bad"]
        max-smtp-out = 5
        """
    ) == [
        't.toml:5: domain."*.example.com.": same domain as domain."*.Example.com"; '
        "merge the two tables",
        "t.toml:7: domain.\"a.*.com\": invalid wildcard 'a.*.com'; write '*' or '*.DOMAIN'",
        "t.toml:9: domain.\"*example.com\": invalid wildcard '*example.com'; "
        "write '*' or '*.DOMAIN'",
        "t.toml:11: domain.\"*.-bad\": invalid domain name '-bad': label '-bad' must be 1-63 "
        "letters, digits or hyphens, not starting or ending with a hyphen",
    ]


def test_wildcard_and_exact_tables_are_distinct() -> None:
    config = parse('[domain."*.example.com"]\nmax-smtp-out = 1\n[domain."example.com"]\n')
    assert config.policy_for("example.com").max_smtp_out == 20
    assert config.policy_for("www.example.com").max_smtp_out == 1


# --------------------------------------------------------------------------- virtual MTAs


def test_virtual_mtas_and_default() -> None:
    config = parse(
        """\
        [virtual-mta.mta10]
        smtp-source-host = "192.0.2.10 MTA10.Example.NET"
        [virtual-mta.v6]
        smtp-source-host = "2001:db8:0::1"
        [virtual-mta.plain]
        """
    )
    assert dict(config.virtual_mtas) == {
        "default": VirtualMta("default", None, "fqdn.example.test"),
        "mta10": VirtualMta("mta10", "192.0.2.10", "mta10.example.net"),
        "v6": VirtualMta("v6", "2001:db8::1", "fqdn.example.test"),
        "plain": VirtualMta("plain", None, "fqdn.example.test"),
    }
    assert parse("").virtual_mtas == {"default": VirtualMta("default", None, "fqdn.example.test")}


def test_default_vmta_may_be_redefined() -> None:
    config = parse('[virtual-mta.default]\nsmtp-source-host = "127.0.0.10 mta.example.test"\n')
    assert config.virtual_mtas["default"] == VirtualMta("default", "127.0.0.10", "mta.example.test")


def test_virtual_mta_errors() -> None:
    assert errors(
        """\
        [virtual-mta.a]
        smtp-source-host = "mta.example.net"
        [virtual-mta.b]
        smtp-source-host = "192.0.2.1 bad_name"
        [virtual-mta.c]
        smtp-source-host = "192.0.2.1 a.example b.example"
        source-host = "x"
        [virtual-mta.d]
        domains = 1
        [virtual-mta.e.domain."x.example"]
        max-smtp-out = 0
        [virtual-mta.f.domain.mail.example.net]
        max-smtp-out = 1
        [virtual-mta."bad name"]
        """
    ) == [
        "t.toml:4: virtual-mta.a.smtp-source-host: 'mta.example.net' is not an IP address",
        "t.toml:6: virtual-mta.b.smtp-source-host: EHLO name: invalid domain name 'bad_name': "
        "label 'bad_name' must be 1-63 letters, digits or hyphens, "
        "not starting or ending with a hyphen",
        "t.toml:8: virtual-mta.c.smtp-source-host: expected 'IP-ADDRESS [EHLO-NAME]', "
        "got '192.0.2.1 a.example b.example'",
        "t.toml:9: virtual-mta.c.source-host: unknown key 'source-host' "
        "(did you mean 'smtp-source-host'?)",
        "t.toml:11: virtual-mta.d.domains: unknown key 'domains' (did you mean 'domain'?)",
        't.toml:13: virtual-mta.e.domain."x.example".max-smtp-out: must be at least 1, got 0',
        "t.toml:14: virtual-mta.f.domain.mail.example: unknown key 'example'; "
        'quote domain names that contain dots: [virtual-mta.f.domain."mail.example"]',
        "t.toml:16: virtual-mta.\"bad name\": invalid name 'bad name'; use letters, digits, "
        "'-', '_' and '.', starting with a letter or digit",
    ]


# --------------------------------------------------------------------------- pools

POOLED = """\
[virtual-mta.a]
smtp-source-host = "192.0.2.1"
[virtual-mta.b]
smtp-source-host = "192.0.2.2"
"""


def test_pools() -> None:
    config = parse(
        POOLED
        + """\
        [virtual-mta-pool.both]
        virtual-mtas = ["a", "b"]
        weights = [2, 1]
        [virtual-mta-pool.even]
        virtual-mtas = ["b", "default"]
        """
    )
    assert dict(config.vmta_pools) == {
        "both": VmtaPool("both", ("a", "b"), (2, 1)),
        "even": VmtaPool("even", ("b", "default"), (1, 1)),
    }


def test_pool_errors() -> None:
    assert errors(
        POOLED
        + """\
        [virtual-mta-pool.a]
        virtual-mtas = ["b"]
        [virtual-mta-pool.default]
        virtual-mtas = ["a"]
        [virtual-mta-pool.p1]
        virtual-mtas = ["a", "c", "a", "p2", "bb"]
        [virtual-mta-pool.p2]
        virtual-mtas = ["a", "b"]
        weights = [1, 0]
        [virtual-mta-pool.p3]
        virtual-mtas = ["a", "b"]
        weights = [1]
        [virtual-mta-pool.p4]
        weights = [1]
        [virtual-mta-pool.p5]
        virtual-mtas = []
        """
    ) == [
        "t.toml:7: virtual-mta-pool.a: 'a' is already a virtual MTA; "
        "virtual MTAs and pools share one namespace",
        "t.toml:9: virtual-mta-pool.default: the name 'default' is reserved "
        "for the default virtual MTA",
        "t.toml:12: virtual-mta-pool.p1.virtual-mtas[1]: no virtual MTA named 'c'",
        "t.toml:12: virtual-mta-pool.p1.virtual-mtas[2]: 'a' is listed twice",
        "t.toml:12: virtual-mta-pool.p1.virtual-mtas[3]: 'p2' is a pool; "
        "pools contain virtual MTAs",
        "t.toml:12: virtual-mta-pool.p1.virtual-mtas[4]: no virtual MTA named 'bb' "
        "(did you mean 'b'?)",
        "t.toml:15: virtual-mta-pool.p2.weights[1]: must be at least 1, got 0",
        "t.toml:18: virtual-mta-pool.p3.weights: has 1 entries for 2 virtual-mtas",
        "t.toml:19: virtual-mta-pool.p4: missing required key 'virtual-mtas'",
        "t.toml:22: virtual-mta-pool.p5.virtual-mtas: must not be empty",
    ]


# --------------------------------------------------------------------------- selection


def test_vmta_selection_keys() -> None:
    config = parse(
        POOLED
        + """\
        [virtual-mta-pool.both]
        virtual-mtas = ["a", "b"]
        [server]
        default-virtual-mta = "both"
        [[listener]]
        address = "127.0.0.1:2526"
        default-virtual-mta = "a"
        process-x-virtual-mta = true
        [sender-domain."News.Example.com"]
        virtual-mta = "b"
        [sender-domain."other.example"]
        """
    )
    assert config.server.default_virtual_mta == "both"
    assert config.listeners[0].default_virtual_mta is None
    assert config.listeners[0].process_x_virtual_mta is False
    assert config.listeners[1].default_virtual_mta == "a"
    assert config.listeners[1].process_x_virtual_mta is True
    assert dict(config.sender_domains) == {
        "news.example.com": SenderDomainSettings(virtual_mta="b"),
        "other.example": SenderDomainSettings(virtual_mta=None),
    }
    assert parse("").server.default_virtual_mta == "default"


def test_vmta_selection_errors() -> None:
    assert errors(
        POOLED
        + """\
        [server]
        default-virtual-mta = "c"
        [[listener]]
        address = "127.0.0.1:2526"
        default-virtual-mta = "bb"
        [sender-domain."x.example"]
        virtual-mta = "nope"
        [sender-domain."X.example."]
        virtual-mta = "a"
        [sender-domain."bad_domain"]
        virtual-mta = "a"
        [sender-domain."y.example"]
        virtual-mtas = "a"
        """
    ) == [
        "t.toml:8: server.default-virtual-mta: no virtual MTA or pool named 'c'; "
        "define it as [virtual-mta.NAME] or [virtual-mta-pool.NAME]",
        "t.toml:11: listener[1].default-virtual-mta: no virtual MTA or pool named 'bb' "
        "(did you mean 'b'?)",
        't.toml:13: sender-domain."x.example".virtual-mta: no virtual MTA or pool named '
        "'nope'; define it as [virtual-mta.NAME] or [virtual-mta-pool.NAME]",
        't.toml:14: sender-domain."X.example.": same domain as sender-domain."x.example"; '
        "merge the two tables",
        "t.toml:16: sender-domain.bad_domain: invalid domain name 'bad_domain': label "
        "'bad_domain' must be 1-63 letters, digits or hyphens, "
        "not starting or ending with a hyphen",
        "t.toml:19: sender-domain.\"y.example\".virtual-mtas: unknown key 'virtual-mtas' "
        "(did you mean 'virtual-mta'?)",
    ]


# --------------------------------------------------------------------------- pattern lists


def test_pattern_lists() -> None:
    config = parse(
        """\
        [smtp-pattern-list.blocking]
        rules = [
            { reply = "too many connections", action = "mode=backoff" },
            { reply = "^5\\\\.1\\\\.1", action = "bounce", phase = "rcpt" },
        ]
        [[smtp-pattern-list.other.rules]]
        reply = "blocked"
        action = "disable-source-ip"
        phase = "data-end"
        """
    )
    blocking = config.pattern_lists["blocking"]
    assert blocking == (
        PatternRule(
            re.compile("too many connections", re.IGNORECASE),
            "mode=backoff",
            "any",
            "smtp-pattern-list.blocking.rules[0]",
        ),
        PatternRule(
            re.compile(r"^5\.1\.1", re.IGNORECASE),
            "bounce",
            "rcpt",
            "smtp-pattern-list.blocking.rules[1]",
        ),
    )
    assert blocking[0].regex.search("421 4.7.0 Too Many Connections from your IP")
    assert config.pattern_lists["other"][0].action == "disable-source-ip"
    assert config.pattern_lists["other"][0].phase == "data-end"


def test_pattern_list_errors() -> None:
    assert errors(
        """\
        [smtp-pattern-list.a]
        rules = [
            { reply = "(unclosed", action = "mode=backoff" },
            { reply = "ok", action = "explode" },
            { reply = "ok", action = "defer", phase = "quit" },
            { reply = "", action = "defer" },
            { action = "defer" },
            { reply = "x", action = "defer", replay = "y" },
            "x",
        ]
        [smtp-pattern-list.b]
        rule = []
        [smtp-pattern-list.c]
        rules = []
        [smtp-pattern-list.d]
        rules = "x"
        """
    ) == [
        "t.toml:5: smtp-pattern-list.a.rules[0].reply: invalid regular expression '(unclosed': "
        "missing ), unterminated subpattern at position 0",
        "t.toml:6: smtp-pattern-list.a.rules[1].action: must be one of 'mode=backoff', "
        "'mode=normal', 'disable-source-ip', 'bounce', 'defer', got 'explode'",
        "t.toml:7: smtp-pattern-list.a.rules[2].phase: must be one of 'any', 'connect', "
        "'greeting', 'ehlo', 'starttls', 'mail', 'rcpt', 'data', 'data-end', got 'quit'",
        "t.toml:8: smtp-pattern-list.a.rules[3].reply: must not be empty "
        "(it would match every reply)",
        "t.toml:9: smtp-pattern-list.a.rules[4]: missing required key 'reply'",
        "t.toml:10: smtp-pattern-list.a.rules[5].replay: unknown key 'replay' "
        "(did you mean 'reply'?)",
        "t.toml:11: smtp-pattern-list.a.rules[6]: expected a table, got string",
        "t.toml:13: smtp-pattern-list.b: missing required key 'rules'",
        "t.toml:14: smtp-pattern-list.b.rule: unknown key 'rule' (did you mean 'rules'?)",
        "t.toml:16: smtp-pattern-list.c.rules: must not be empty",
        "t.toml:18: smtp-pattern-list.d.rules: expected an array, got string",
    ]


# --------------------------------------------------------------------------- docs/shaping.md


def _toml_blocks(path: Path) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", path.read_text(encoding="utf-8"), re.DOTALL)


def test_shaping_doc_examples_load_and_match_the_resolution_table() -> None:
    blocks = _toml_blocks(ROOT / "docs" / "shaping.md")
    assert len(blocks) == 4
    configs = [parse_config(LISTENER + block, "shaping.md") for block in blocks]
    layered = configs[0]
    hour = 3600.0
    rows = {
        ("example.org", None): (20, Rate(1000, hour)),
        ("example.com", None): (10, Rate(1000, hour)),
        ("hotmail.com", None): (10, Rate(300, hour)),
        ("outlook.com", None): (10, Rate(300, hour)),
        ("outlook.com", "warmup"): (10, Rate(50, hour)),
    }
    for (domain, vmta), expected in rows.items():
        policy = layered.policy_for(domain, vmta)
        assert (policy.max_smtp_out, policy.max_msg_rate) == expected, (domain, vmta)
    assert layered.policy_for("outlook.com").retry_after == (600.0,)
    assert layered.policy_for("example.org").retry_after == DomainPolicy().retry_after
    assert configs[1].vmta_pools["bulk"].weights == (2, 1)
    providers = configs[3]
    assert providers.policy_for("live.com").reenable_source_ip_after == 4 * hour
    assert providers.policy_for("gmail.com").require_starttls is True
    assert providers.policy_for("example.net").smtp_pattern_list == "providers"
