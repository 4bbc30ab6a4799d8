"""Which keys each config table accepts, and how each value is converted.

Keys are PowerMTA's directive names where one exists; the dataclass field is the
key with ``-`` replaced by ``_`` unless a :class:`Field` says otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from outrider.config import convert as c
from outrider.config.model import (
    LISTENER_ROLES,
    LISTENER_TLS_MODES,
    PATTERN_ACTIONS,
    PATTERN_PHASES,
    TLS_MIN_VERSIONS,
    TLS_VERIFY_MODES,
)

__all__ = [
    "AUTH",
    "DNS",
    "DOMAIN",
    "LISTENER",
    "MTA_STS",
    "PASSWORD_HASHES",
    "PATTERN_RULE",
    "RELAY",
    "SENDER_DOMAIN",
    "SERVER",
    "TOP_LEVEL",
    "VIRTUAL_MTA",
    "VIRTUAL_MTA_DOMAIN_KEY",
    "VMTA_POOL",
    "Field",
    "known_keys",
]


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # dataclass field
    convert: c.Converter


def _regex(value: object) -> re.Pattern[str]:
    text = c.string(value)
    if not text:
        raise c.fail("must not be empty (it would match every reply)")
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise c.fail(f"invalid regular expression {text!r}: {exc.msg}{where}") from None


PASSWORD_HASHES = ("scrypt", "argon2id")

SERVER: Mapping[str, Field] = {
    "hostname": Field("hostname", c.hostname),
    "spool-dir": Field("spool_dir", c.path),
    "log-dir": Field("log_dir", c.path),
    "shutdown-timeout": Field("shutdown_timeout", c.duration(positive=False)),
    "receiver-processes": Field("receiver_processes", c.integer(0)),
    "max-delivery-concurrency": Field("max_delivery_concurrency", c.integer(1)),
    "pid-file": Field("pid_file", c.path),
    "default-virtual-mta": Field("default_virtual_mta", c.string),
    "state-dir": Field("state_dir", c.path),
}

DNS: Mapping[str, Field] = {
    "nameservers": Field("nameservers", c.array_of(c.address(53, ip_only=True))),
    "timeout": Field("timeout", c.duration(positive=True)),
}

LISTENER: Mapping[str, Field] = {
    "address": Field("address", c.address(None, allow_zero_port=True)),
    "relay-networks": Field("relay_networks", c.array_of(c.network)),
    "max-message-size": Field("max_message_size", c.size),
    "max-rcpt-per-message": Field("max_rcpt_per_message", c.integer(1)),
    "max-errors": Field("max_errors", c.integer(1)),
    "command-timeout": Field("command_timeout", c.duration(positive=True)),
    "data-timeout": Field("data_timeout", c.duration(positive=True)),
    "max-connections": Field("max_connections", c.integer(1)),
    "banner": Field("banner", c.banner),
    "role": Field("role", c.choice(LISTENER_ROLES)),
    "tls": Field("tls", c.choice(LISTENER_TLS_MODES)),
    "tls-cert": Field("tls_cert", c.readable_file),
    "tls-key": Field("tls_key", c.readable_file),
    "tls-min-version": Field("tls_min_version", c.choice(TLS_MIN_VERSIONS)),
    "auth": Field("auth", c.boolean),
    "allow-plaintext-auth": Field("allow_plaintext_auth", c.boolean),
    "max-connections-per-client": Field("max_connections_per_client", c.integer(0)),
    "max-connect-rate-per-client": Field("max_connect_rate_per_client", c.rate),
    "max-messages-per-connection": Field("max_messages_per_connection", c.integer(0)),
    "max-rcpt-per-connection": Field("max_rcpt_per_connection", c.integer(0)),
    "auth-max-failures": Field("auth_max_failures", c.integer(1)),
    "auth-failure-window": Field("auth_failure_window", c.duration(positive=True)),
    "auth-block-time": Field("auth_block_time", c.duration(positive=True)),
    "auth-failure-delay": Field("auth_failure_delay", c.duration(positive=False)),
    "add-missing-headers": Field("add_missing_headers", c.boolean),
    "default-virtual-mta": Field("default_virtual_mta", c.string),
    "process-x-virtual-mta": Field("process_x_virtual_mta", c.boolean),
}

RELAY: Mapping[str, Field] = {
    "domains": Field("domains", c.domain_set),
}

DOMAIN: Mapping[str, Field] = {
    "retry-after": Field("retry_after", c.array_of(c.duration(positive=True), non_empty=True)),
    "bounce-after": Field("bounce_after", c.duration(positive=False)),
    "route": Field("route", c.address(25)),
    "max-smtp-out": Field("max_smtp_out", c.integer(1)),
    "max-msg-per-connection": Field("max_msg_per_connection", c.integer(0)),
    "connect-timeout": Field("connect_timeout", c.duration(positive=True)),
    "smtp-greeting-timeout": Field("smtp_greeting_timeout", c.duration(positive=True)),
    "smtp-command-timeout": Field("smtp_command_timeout", c.duration(positive=True)),
    "smtp-data-init-timeout": Field("smtp_data_init_timeout", c.duration(positive=True)),
    "smtp-data-block-timeout": Field("smtp_data_block_timeout", c.duration(positive=True)),
    "smtp-data-termination-timeout": Field(
        "smtp_data_termination_timeout", c.duration(positive=True)
    ),
    "connection-idle-timeout": Field("connection_idle_timeout", c.duration(positive=False)),
    "use-starttls": Field("use_starttls", c.boolean),
    "smtp-port": Field("smtp_port", c.port),
    "max-rcpt-per-transaction": Field("max_rcpt_per_transaction", c.integer(1)),
    "max-msg-rate": Field("max_msg_rate", c.rate),
    "max-connect-rate": Field("max_connect_rate", c.rate),
    "queue-priority": Field("queue_priority", c.integer_range(0, 100)),
    "mx-rollup": Field("mx_rollup", c.boolean),
    "bounce-upon-no-mx": Field("bounce_upon_no_mx", c.boolean),
    "smtp-421-means-mx-unavailable": Field("smtp_421_means_mx_unavailable", c.boolean),
    "smtp-pattern-list": Field("smtp_pattern_list", c.string),
    "backoff-max-msg-rate": Field("backoff_max_msg_rate", c.rate),
    "backoff-max-smtp-out": Field("backoff_max_smtp_out", c.integer(1)),
    "backoff-retry-after": Field("backoff_retry_after", c.duration(positive=True)),
    "backoff-to-normal-after": Field("backoff_to_normal_after", c.optional_duration("never")),
    "backoff-to-normal-after-delivery": Field("backoff_to_normal_after_delivery", c.boolean),
    "reenable-source-ip-after": Field("reenable_source_ip_after", c.duration(positive=True)),
    "delay-warning-after": Field("delay_warning_after", c.optional_duration("never")),
    "require-starttls": Field("require_starttls", c.boolean),
    "tls-verify": Field("tls_verify", c.choice(TLS_VERIFY_MODES)),
    "tls-ca-file": Field("tls_ca_file", c.readable_file),
    "mta-sts": Field("mta_sts", c.boolean),
}

AUTH: Mapping[str, Field] = {
    "users-file": Field("users_file", c.path),
    "password-hash": Field("password_hash", c.choice(PASSWORD_HASHES)),
}

MTA_STS: Mapping[str, Field] = {
    "enabled": Field("enabled", c.boolean),
    "cache-dir": Field("cache_dir", c.path),
    "fetch-timeout": Field("fetch_timeout", c.duration(positive=True)),
    "https-port": Field("https_port", c.port),
    "ca-file": Field("ca_file", c.readable_file),
}

# [virtual-mta.NAME]: besides these keys, a "domain" sub-table of override tables.
VIRTUAL_MTA: Mapping[str, Field] = {
    "smtp-source-host": Field("source_host", c.source_host),
}
VIRTUAL_MTA_DOMAIN_KEY = "domain"

VMTA_POOL: Mapping[str, Field] = {
    "virtual-mtas": Field("members", c.array_of(c.string, non_empty=True)),
    "weights": Field("weights", c.array_of(c.integer(1), non_empty=True)),
}

PATTERN_RULE: Mapping[str, Field] = {
    "reply": Field("regex", _regex),
    "action": Field("action", c.choice(PATTERN_ACTIONS)),
    "phase": Field("phase", c.choice(PATTERN_PHASES)),
}

SENDER_DOMAIN: Mapping[str, Field] = {
    "virtual-mta": Field("virtual_mta", c.string),
}

TOP_LEVEL = (
    "server",
    "dns",
    "listener",
    "relay",
    "domain",
    "domain-macro",
    "virtual-mta",
    "virtual-mta-pool",
    "smtp-pattern-list",
    "sender-domain",
    "auth",
    "mta-sts",
)


def known_keys() -> dict[str, tuple[str, ...]]:
    """Keys accepted per table.

    ``listener`` is [[listener]]; ``domain``, ``virtual-mta``, ``virtual-mta-pool``,
    ``smtp-pattern-list`` and ``sender-domain`` are ``[TABLE."NAME"]``;
    ``smtp-pattern-list.rules`` are the keys of one rule. ``[domain-macro]`` takes
    any macro name, and ``[virtual-mta.NAME.domain."…"]`` the ``domain`` keys.
    """
    return {
        "server": tuple(SERVER),
        "dns": tuple(DNS),
        "listener": tuple(LISTENER),
        "relay": tuple(RELAY),
        "domain": tuple(DOMAIN),
        "virtual-mta": tuple(VIRTUAL_MTA),
        "virtual-mta-pool": tuple(VMTA_POOL),
        "smtp-pattern-list": ("rules",),
        "smtp-pattern-list.rules": tuple(PATTERN_RULE),
        "sender-domain": tuple(SENDER_DOMAIN),
        "auth": tuple(AUTH),
        "mta-sts": tuple(MTA_STS),
    }
