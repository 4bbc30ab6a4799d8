"""The virtual-MTA choice (formerly the queue manager's): header, listener, sender
domain, server; unknown names."""

from __future__ import annotations

import pytest

from outrider.config.loader import parse_config
from outrider.intake.vmta import VmtaTable, choose_vmta, envelope_vmta
from outrider.message.envelope import Envelope, Recipient

TABLE = VmtaTable(
    known=frozenset({"default", "mta10", "mta11", "pool1", "srv"}),
    sender_defaults={"x.test": "mta11", "gone.test": "removed"},
    server_default="srv",
)


@pytest.mark.parametrize(
    ("sender", "requested", "listener", "chosen"),
    [
        ("s@x.test", "mta10", "pool1", "mta10"),  # the header (when honoured) first
        ("s@x.test", " mta10 ", None, "mta10"),  # stripped
        ("s@x.test", "nosuch", "pool1", "pool1"),  # unknown header: ignored
        ("s@x.test", "   ", "pool1", "pool1"),  # blank header: ignored
        ("s@x.test", None, "pool1", "pool1"),  # the listener's default
        ("s@x.test", None, "nosuch", "default"),  # unknown listener default: "default"
        ("s@X.TEST", None, None, "mta11"),  # the sender domain's (case-insensitive)
        ("s@gone.test", None, None, "default"),  # unknown sender-domain default
        ("s@other.test", None, None, "srv"),  # the server's
        ("", None, None, "srv"),  # the null sender
    ],
)
def test_choice_table(
    sender: str, requested: str | None, listener: str | None, chosen: str
) -> None:
    choice = choose_vmta(TABLE, sender=sender, requested=requested, listener_default=listener)
    assert choice == chosen


def test_unknown_server_default_gives_default() -> None:
    table = VmtaTable(known=frozenset({"default"}), sender_defaults={}, server_default="gone")
    assert choose_vmta(table, sender="s@a.test", requested=None, listener_default=None) == (
        "default"
    )


def test_envelope_keeps_a_known_choice_and_chooses_again_otherwise() -> None:
    env = Envelope("Q1", "s@x.test", [Recipient("r@b.test")], 0.0, vmta="pool1")
    assert envelope_vmta(TABLE, env) == "pool1"
    env.vmta = "removed-by-reload"
    env.vmta_request = "mta10"
    assert envelope_vmta(TABLE, env) == "mta10"
    env.vmta, env.vmta_request, env.listener_vmta = "", "", ""
    assert envelope_vmta(TABLE, env) == "mta11"  # an old spool file: sender domain


def test_table_from_config() -> None:
    config = parse_config(
        """
[server]
hostname = "mta.outrider.test"
default-virtual-mta = "mta10"
[[listener]]
address = "127.0.0.1:0"
[virtual-mta.mta10]
smtp-source-host = "127.0.0.10"
[virtual-mta-pool.pool1]
virtual-mtas = ["mta10", "default"]
[sender-domain."x.test"]
virtual-mta = "pool1"
"""
    )
    table = VmtaTable.from_config(config)
    assert table.known == {"default", "mta10", "pool1"}
    assert dict(table.sender_defaults) == {"x.test": "pool1"}
    assert table.server_default == "mta10"
