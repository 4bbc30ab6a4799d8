"""Security config: listener roles, TLS, AUTH and per-client limits; [auth]; [mta-sts]."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest

from outrider.config.loader import parse_config
from outrider.config.model import (
    AuthSettings,
    Config,
    ConfigError,
    ListenerSettings,
    MtaStsSettings,
)
from outrider.config.units import Rate


@pytest.fixture(autouse=True)
def _pinned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "fqdn.example.test")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cert.pem").write_text("cert", encoding="ascii")
    (tmp_path / "key.pem").write_text("key", encoding="ascii")


def parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text), "t.toml")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


TLS = 'tls-cert = "cert.pem"\ntls-key = "key.pem"\n'


def listener(extra: str = "", address: str = "127.0.0.1:2525") -> ListenerSettings:
    config = parse(f'[[listener]]\naddress = "{address}"\n' + textwrap.dedent(extra))
    return config.listeners[0]


def test_mx_listener_defaults() -> None:
    got = listener()
    assert got == ListenerSettings(address=("127.0.0.1", 2525))
    assert (got.role, got.tls, got.tls_cert, got.tls_key) == ("mx", "none", None, None)
    assert got.tls_min_version == "TLSv1.2"
    assert got.auth is False
    assert got.allow_plaintext_auth is False
    assert got.max_connections_per_client == 20
    assert got.max_connect_rate_per_client == Rate(60, 60.0)
    assert got.max_messages_per_connection == 1000
    assert got.max_rcpt_per_connection == 10000
    assert got.limits_exempt_relay_networks is True  # like Postfix's $mynetworks exception
    assert got.limits_exempt_authenticated is True
    assert got.auth_max_failures == 5
    assert got.auth_failure_window == 600.0
    assert got.auth_block_time == 900.0
    assert got.auth_failure_delay == 1.0
    assert got.add_missing_headers is False
    assert got.default_virtual_mta is None
    assert got.process_x_virtual_mta is False


def test_tls_defaults_follow_the_certificate(tmp_path: Path) -> None:
    got = listener(TLS)
    assert (got.tls, got.tls_cert, got.tls_key) == (
        "starttls",
        tmp_path / "cert.pem",
        tmp_path / "key.pem",
    )
    assert listener(TLS + 'tls = "implicit"\n').tls == "implicit"
    assert listener(TLS + 'tls = "none"\n').tls == "none"


@pytest.mark.parametrize(
    ("role", "tls"),
    [("submission", "starttls"), ("submissions", "implicit")],
)
def test_submission_roles(role: str, tls: str) -> None:
    got = listener(TLS + f'role = "{role}"\n', "0.0.0.0:587")
    assert (got.role, got.tls, got.auth, got.add_missing_headers) == (role, tls, True, True)


def test_every_security_key_parses() -> None:
    got = listener(
        TLS
        + """\
        role = "submission"
        tls = "starttls"
        tls-min-version = "TLSv1.3"
        auth = false
        allow-plaintext-auth = true
        max-connections-per-client = 0
        max-connect-rate-per-client = "unlimited"
        max-messages-per-connection = 0
        max-rcpt-per-connection = 5
        limits-exempt-relay-networks = false
        limits-exempt-authenticated = false
        auth-max-failures = 3
        auth-failure-window = "1h"
        auth-block-time = "2h"
        auth-failure-delay = 0
        add-missing-headers = false
        """,
        "[::1]:587",
    )
    assert got.tls_min_version == "TLSv1.3"
    assert (got.auth, got.allow_plaintext_auth, got.add_missing_headers) == (False, True, False)
    assert got.max_connections_per_client == 0
    assert got.max_connect_rate_per_client is None
    assert (got.max_messages_per_connection, got.max_rcpt_per_connection) == (0, 5)
    assert (got.limits_exempt_relay_networks, got.limits_exempt_authenticated) == (False, False)
    assert (got.auth_max_failures, got.auth_failure_window) == (3, 3600.0)
    assert (got.auth_block_time, got.auth_failure_delay) == (7200.0, 0.0)


@pytest.mark.parametrize(
    "address", ["127.0.0.1:587", "127.9.9.9:587", "[::1]:587", "localhost:587"]
)
def test_plaintext_auth_on_loopback(address: str) -> None:
    got = listener('role = "submission"\nallow-plaintext-auth = true\n', address)
    assert (got.auth, got.tls, got.allow_plaintext_auth) == (True, "none", True)


def test_tls_and_role_errors(tmp_path: Path) -> None:
    (tmp_path / "dir.pem").mkdir()
    assert errors(
        """\
        [[listener]]
        address = "127.0.0.1:25"
        tls-cert = "cert.pem"
        [[listener]]
        address = "127.0.0.1:26"
        tls-key = "key.pem"
        [[listener]]
        address = "127.0.0.1:27"
        tls = "implicit"
        [[listener]]
        address = "127.0.0.1:28"
        role = "submissions"
        [[listener]]
        address = "127.0.0.1:29"
        role = "submissions"
        tls-cert = "cert.pem"
        tls-key = "key.pem"
        tls = "starttls"
        [[listener]]
        address = "127.0.0.1:30"
        tls-cert = "missing.pem"
        tls-key = "dir.pem"
        tls-min-version = "TLSv1.1"
        role = "relay"
        tls = "yes"
        """
    ) == [
        "t.toml:3: listener[0].tls-cert: tls-cert and tls-key must be given together",
        "t.toml:6: listener[1].tls-key: tls-cert and tls-key must be given together",
        "t.toml:9: listener[2].tls: tls = 'implicit' needs tls-cert and tls-key",
        "t.toml:12: listener[3].role: role 'submissions' (TLS from the first byte) needs "
        "tls-cert and tls-key",
        "t.toml:18: listener[4].tls: role 'submissions' needs tls = 'implicit'",
        f"t.toml:21: listener[5].tls-cert: {tmp_path / 'missing.pem'} does not exist",
        f"t.toml:22: listener[5].tls-key: {tmp_path / 'dir.pem'} is not a regular file",
        "t.toml:23: listener[5].tls-min-version: must be one of 'TLSv1.2', 'TLSv1.3', "
        "got 'TLSv1.1'",
        "t.toml:24: listener[5].role: must be one of 'mx', 'submission', 'submissions', "
        "got 'relay'",
        "t.toml:25: listener[5].tls: must be one of 'none', 'starttls', 'implicit', got 'yes'",
    ]


def test_unreadable_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    real_access = os.access
    cert = tmp_path / "cert.pem"
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != cert and real_access(p, mode))
    assert errors('[[listener]]\naddress = "127.0.0.1:25"\n' + TLS) == [
        f"t.toml:3: listener[0].tls-cert: {cert} is not readable by this process"
    ]


def test_auth_errors() -> None:
    assert errors(
        """\
        [[listener]]
        address = "0.0.0.0:587"
        role = "submission"
        [[listener]]
        address = "0.0.0.0:588"
        auth = true
        [[listener]]
        address = "192.0.2.1:589"
        role = "submission"
        allow-plaintext-auth = true
        [[listener]]
        address = "127.0.0.1:590"
        auth-max-failures = 0
        auth-failure-window = 0
        auth-block-time = "-1m"
        max-connections-per-client = -1
        max-connect-rate-per-client = "0/m"
        add-missing-headers = 1
        """
    ) == [
        "t.toml:3: listener[0].role: AUTH is only offered over TLS: set tls-cert and tls-key, "
        "or allow-plaintext-auth = true on a loopback address, or auth = false",
        "t.toml:6: listener[1].auth: AUTH is only offered over TLS: set tls-cert and tls-key, "
        "or allow-plaintext-auth = true on a loopback address, or auth = false",
        "t.toml:10: listener[2].allow-plaintext-auth: only allowed on a loopback address, "
        "not '192.0.2.1': passwords would cross the network in clear",
        "t.toml:13: listener[3].auth-max-failures: must be at least 1, got 0",
        "t.toml:14: listener[3].auth-failure-window: must be greater than zero, got 0",
        "t.toml:15: listener[3].auth-block-time: duration must not be negative, got '-1m'",
        "t.toml:16: listener[3].max-connections-per-client: must not be negative, got -1",
        "t.toml:17: listener[3].max-connect-rate-per-client: rate '0/m' allows nothing; "
        "the count must be at least 1",
        "t.toml:18: listener[3].add-missing-headers: expected a boolean (true or false), "
        "got integer",
    ]


def test_mx_listener_without_auth_needs_no_tls() -> None:
    assert listener('role = "submission"\nauth = false\n', "0.0.0.0:587").auth is False


# --------------------------------------------------------------------------- [auth], [mta-sts]

LISTENER = '[[listener]]\naddress = "127.0.0.1:2525"\n'


def test_auth_and_mta_sts_defaults(tmp_path: Path) -> None:
    config = parse(LISTENER)
    assert config.auth == AuthSettings(users_file=tmp_path / "var/users", password_hash="scrypt")
    assert config.mta_sts == MtaStsSettings(
        enabled=True, cache_dir=None, fetch_timeout=10.0, https_port=443, ca_file=None
    )
    assert config.server.state_dir == tmp_path / "var/state"


def test_auth_and_mta_sts_keys(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("ca", encoding="ascii")
    config = parse(
        LISTENER
        + """\
        [server]
        state-dir = "/srv/state"
        [auth]
        users-file = "etc/users"
        password-hash = "scrypt"
        [mta-sts]
        enabled = false
        cache-dir = "var/mta-sts"
        fetch-timeout = "3s"
        https-port = 8443
        ca-file = "ca.pem"
        """
    )
    assert config.server.state_dir == Path("/srv/state")
    assert config.auth == AuthSettings(users_file=tmp_path / "etc/users")
    assert config.mta_sts == MtaStsSettings(
        enabled=False,
        cache_dir=tmp_path / "var/mta-sts",
        fetch_timeout=3.0,
        https_port=8443,
        ca_file=tmp_path / "ca.pem",
    )


def test_auth_and_mta_sts_errors(tmp_path: Path) -> None:
    assert errors(
        LISTENER
        + """\
        [auth]
        users-file = ""
        password-hash = "md5"
        users = "x"
        [mta-sts]
        enabled = "yes"
        fetch-timeout = 0
        https-port = 0
        ca-file = "nope.pem"
        cache = "x"
        """
    ) == [
        "t.toml:4: auth.users-file: must be a non-empty path",
        "t.toml:5: auth.password-hash: must be one of 'scrypt', 'argon2id', got 'md5'",
        "t.toml:6: auth.users: unknown key 'users' (did you mean 'users-file'?)",
        "t.toml:8: mta-sts.enabled: expected a boolean (true or false), got string",
        "t.toml:9: mta-sts.fetch-timeout: must be greater than zero, got 0",
        "t.toml:10: mta-sts.https-port: must be a TCP port from 1 to 65535, got 0",
        f"t.toml:11: mta-sts.ca-file: {tmp_path / 'nope.pem'} does not exist",
        "t.toml:12: mta-sts.cache: unknown key 'cache' (did you mean 'cache-dir'?)",
    ]


def test_argon2id_needs_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert errors(LISTENER + '[auth]\npassword-hash = "argon2id"\n') == [
        "t.toml:4: auth.password-hash: 'argon2id' needs the argon2-cffi package, "
        "which is not installed; use 'scrypt'"
    ]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert parse(LISTENER + '[auth]\npassword-hash = "argon2id"\n').auth.password_hash == (
        "argon2id"
    )
