"""The Postfix translator: exact TOML for small configurations, and what is reported."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from outrider.importers.postfix import (
    Imported,
    import_postfix,
    network,
    postfix_seconds,
    retry_schedule,
    tls_min_version,
)

MASTER_SMTP = "smtp inet n - y - - smtpd\nsmtp unix - - y - - smtp\n"


def run(tmp_path: Path, main: str, master: str = MASTER_SMTP, **tables: str) -> Imported:
    (tmp_path / "main.cf").write_text(main)
    (tmp_path / "master.cf").write_text(master)
    for name, text in tables.items():
        (tmp_path / name).write_text(text)
    return import_postfix(tmp_path)


def body(result: Imported) -> str:
    """The TOML without the three preamble lines."""
    return result.toml.split("\n", 4)[4]


def test_relayhost_networks_and_queue_settings(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "myhostname = relay.example.com\n"
        "relayhost = [smtp.isp.example]:587\n"
        "mynetworks = 127.0.0.0/8 [::1]/128\n"
        "maximal_queue_lifetime = 2d\n"
        "minimal_backoff_time = 300s\n"
        "maximal_backoff_time = 1h\n"
        "message_size_limit = 10240000\n",
    )
    assert body(result) == (
        "[server]\n"
        'hostname = "relay.example.com"  # main.cf:1 myhostname\n'
        "\n"
        "# master.cf:1: smtp inet … smtpd\n"
        "[[listener]]\n"
        'address = "0.0.0.0:25"\n'
        'role = "mx"\n'
        'relay-networks = ["127.0.0.0/8", "::1/128"]  # main.cf:3 mynetworks\n'
        "max-message-size = 10240000  # main.cf:7 message_size_limit\n"
        "\n"
        '[domain."*"]\n'
        'route = "smtp.isp.example:587"  # main.cf:2 relayhost\n'
        'bounce-after = "2d"  # main.cf:4 maximal_queue_lifetime\n'
        'retry-after = ["5m", "10m", "20m", "40m", "1h"]  # main.cf:5 main.cf:6 min/max backoff\n'
    )
    assert result.unsupported == []


def test_virtual_mailboxes_aliases_and_lmtp(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "virtual_mailbox_domains = example.com\n"
        "virtual_mailbox_base = /var/mail/vhosts\n"
        "virtual_mailbox_maps = hash:/etc/postfix/vmailbox\n"
        "virtual_alias_maps = texthash:/etc/postfix/virtual\n"
        "transport_maps = hash:/etc/postfix/transport\n",
        vmailbox="alice@example.com example.com/alice/\nbob@example.com example.com/bob/\n",
        virtual="sales@example.com alice@example.com, bob@example.com\n"
        "@example.com alice@example.com\nfwd@example.com far@remote.example\n",
        transport="example.com lmtp:inet:127.0.0.1:24\n",
    )
    parsed = tomllib.loads(result.toml)
    assert parsed["local-domain"]["example.com"] == {
        "recipient-delimiter": "",
        "mailboxes": ["alice", "bob"],
        "maildir": "/var/mail/vhosts/{domain}/{user}",
        "catch-all": ["alice"],
        "transport": "lmtp:127.0.0.1:24",
        "aliases": {"sales": ["alice", "bob"], "fwd": "far@remote.example"},
    }


def test_submission_services_and_tls(tmp_path: Path) -> None:
    master = (
        "smtp inet n - y - - smtpd\n"
        "submission inet n - y - - smtpd\n"
        "  -o smtpd_tls_security_level=encrypt\n"
        "  -o smtpd_sasl_auth_enable=yes\n"
        "  -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n"
        "smtps inet n - y - - smtpd -o smtpd_tls_wrappermode=yes\n"
    )
    result = run(
        tmp_path,
        "smtpd_tls_cert_file = /etc/ssl/c.pem\nsmtpd_tls_key_file = /etc/ssl/k.pem\n"
        "smtpd_tls_security_level = may\nsmtp_tls_security_level = verify\n",
        master,
    )
    listeners = tomllib.loads(result.toml)["listener"]
    assert [(x["address"], x["role"], x["tls-cert"]) for x in listeners] == [
        ("0.0.0.0:25", "mx", "/etc/ssl/c.pem"),
        ("0.0.0.0:587", "submission", "/etc/ssl/c.pem"),
        ("0.0.0.0:465", "submissions", "/etc/ssl/c.pem"),
    ]
    assert listeners[1]["relay-networks"] == []
    star = tomllib.loads(result.toml)["domain"]["*"]
    assert (star["require-starttls"], star["tls-verify"]) == (True, "ca+hostname")
    assert [n.what for n in result.unsupported] == [
        "-o smtpd_client_restrictions=permit_sasl_authenticated,reject"
    ]
    assert "# master.cf:2: -o smtpd_client_restrictions" in result.toml


def test_submission_without_certificate_is_commented_out(tmp_path: Path) -> None:
    result = run(tmp_path, "", "submission inet n - y - - smtpd -o smtpd_sasl_auth_enable=yes\n")
    assert '# [[listener]]\n# address = "0.0.0.0:587"' in result.toml
    assert tomllib.loads(result.toml)["listener"] == [{"address": "0.0.0.0:25"}]
    assert any("submission" in n.what for n in result.unsupported)


def test_transports_routes_and_concurrency(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "transport_maps = hash:/etc/postfix/transport\n"
        "default_destination_concurrency_limit = 5\n"
        "slow_destination_concurrency_limit = 2\n"
        "slow_destination_rate_delay = 1s\n",
        MASTER_SMTP + "slow unix - - y - - smtp\n",
        transport=(
            "a.example smtp:[10.0.0.1]:2525\n"
            ".a.example smtp:[2001:db8::1]\n"
            "b.example slow:\n"
            "c.example error:gone\n"
            "d.example discard:\n"
            "user@e.example smtp:[10.0.0.2]\n"
            "f.example smtp:mx.f.example\n"
        ),
    )
    domains = tomllib.loads(result.toml)["domain"]
    assert domains["*"] == {"max-smtp-out": 5}
    assert domains["a.example"] == {"route": "10.0.0.1:2525"}
    assert domains["*.a.example"] == {"route": "[2001:db8::1]"}
    assert domains["b.example"] == {"max-smtp-out": 2, "max-msg-rate": "1/s"}
    assert domains["f.example"] == {"route": "mx.f.example"}
    whys = {n.what.split()[0]: n.why for n in result.unsupported}
    assert set(whys) == {"c.example", "d.example", "user@e.example", "mx.f.example"}
    assert "MX" in whys["mx.f.example"]


def test_unsupported_and_default_parameters(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
        "bounce_queue_lifetime = 1d\n"
        "maximal_queue_lifetime = 5d\n"  # Postfix's default: translated anyway
        "message_size_limit = 10240000\n"
        "smtpd_milters = inet:127.0.0.1:8891\n"
        "queue_directory = /var/spool/postfix\n"
        "readme_directory = no\n",
    )
    assert [(n.where, n.why.split(":")[0]) for n in result.unsupported] == [
        ("main.cf:1", "access restrictions"),
        ("main.cf:2", "Outrider has one lifetime for all mail (bounce-after)"),
        ("main.cf:5", "milters are not supported"),
    ]
    assert [n.where for n in result.quiet] == ["main.cf:7"]  # queue_directory is its default
    assert "# main.cf:2: bounce_queue_lifetime = 1d" in result.toml


@pytest.mark.parametrize(
    ("text", "unit", "seconds"),
    [
        ("300s", "s", 300),
        ("5d", "d", 432000),
        ("1w", "d", 604800),
        ("7", "d", 604800),
        ("x", "s", None),
    ],
)
def test_postfix_times(text: str, unit: str, seconds: int | None) -> None:
    assert postfix_seconds(text, unit) == seconds


def test_small_helpers() -> None:
    assert retry_schedule(300, 4000) == ["5m", "10m", "20m", "40m", "1h6m40s"]
    assert retry_schedule(3600, 3600) == ["1h"]
    assert network("[::ffff:127.0.0.0]/104") == "::ffff:7f00:0/104"
    assert network("10.1.2.3/8") == "10.0.0.0/8"
    assert network("/etc/postfix/networks") is None
    assert tls_min_version(">=TLSv1.2") == "TLSv1.2"
    assert tls_min_version("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1, !TLSv1.2") == "TLSv1.3"
    assert tls_min_version("!SSLv2") is None


DATA = Path(__file__).parents[2] / "data" / "postfix"


def test_relay_dataset_loads(tmp_path: Path) -> None:
    from outrider.config.loader import load_config

    result = import_postfix(DATA / "relay")
    (tmp_path / "out.toml").write_text(result.toml)
    config = load_config(str(tmp_path / "out.toml"))
    assert config.server.hostname == "relay.example.com"
    assert "smtp_sasl_password_maps" in " ".join(n.what for n in result.unsupported)


def test_mailserver_dataset_local_domains() -> None:
    result = import_postfix(DATA / "mailserver")
    local = tomllib.loads(result.toml)["local-domain"]
    assert sorted(local) == ["alias.example", "example.info", "example.net"]
    assert local["example.net"]["transport"] == "lmtp:unix:/var/spool/postfix/private/dovecot-lmtp"
    assert local["example.net"]["aliases"]["abuse"] == "postmaster"  # from inline:{…}
    assert local["alias.example"]["catch-all"] == ["bob@example.net"]
    assert any(n.what.startswith("root ") for n in result.unsupported)
