"""The [local-domain."NAME"] and [list."ADDRESS"] tables."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest

from outrider.config.loader import parse_config
from outrider.config.local_kinds import LocalTransport
from outrider.config.model import Config, ConfigError

LISTENER = '[[listener]]\naddress = "127.0.0.1:2525"\n'


@pytest.fixture(autouse=True)
def _no_resolver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "fqdn.example.test")
    monkeypatch.chdir(tmp_path)


def parse(text: str) -> Config:
    return parse_config(LISTENER + textwrap.dedent(text), "t.toml")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def test_a_small_organisation(tmp_path: Path) -> None:
    (tmp_path / "aliases").write_text("abuse: alice\nsales: alice, bob\n")
    (tmp_path / "members").write_text("# the team\nalice@example.com\ncarol@elsewhere.example\n")
    config = parse(
        """
        [local-domain."Example.COM"]
        mailboxes = ["Alice", "bob"]
        aliases-file = "aliases"
        quota = "1G"
        [local-domain."Example.COM".aliases]
        postmaster = "alice"
        old = "Someone@Elsewhere.EXAMPLE"
        both = ["alice", "bob"]

        [local-domain."example.net"]
        transport = "lmtp:unix:/run/dovecot/lmtp"
        recipient-delimiter = ""
        catch-all = "alice@example.com"

        [local-domain."example.org"]
        transport = "lmtp:127.0.0.1:24"
        maildir = "/srv/mail/{user}"
        mailboxes = ["x"]

        [list."Team@example.com"]
        members-file = "members"
        allowed-senders = ["example.com", "boss@Partner.example"]
        """
    )
    com = config.local_domains["example.com"]
    assert com.transport == LocalTransport("maildir")
    assert com.mailboxes == ("alice", "bob")
    assert com.aliases == {
        "postmaster": ("alice",),
        "old": ("Someone@elsewhere.example",),
        "both": ("alice", "bob"),
    }
    assert com.aliases_file == tmp_path / "aliases"
    assert (com.quota, com.recipient_delimiter) == (1024**3, "+")
    net = config.local_domains["example.net"]
    assert str(net.transport) == "lmtp:unix:/run/dovecot/lmtp"
    assert (net.mailboxes, net.catch_all, net.recipient_delimiter) == (
        None,
        ("alice@example.com",),
        "",
    )
    assert config.local_domains["example.org"].transport == LocalTransport("lmtp", "127.0.0.1", 24)
    team = config.lists["team@example.com"]
    assert team.allowed_senders == ("example.com", "boss@partner.example")
    assert team.members_file == tmp_path / "members"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[local-domain."a.example"]\n', "a Maildir domain needs 'mailboxes'"),
        (
            '[local-domain."a.example"]\ntransport = "smtp:x"\nmailboxes = []\n',
            "expected 'maildir'",
        ),
        (
            '[local-domain."a.example"]\ntransport = "lmtp:unix:relative"\n',
            "must be an absolute path",
        ),
        ('[local-domain."a.example"]\nmailboxes = ["a"]\nmaildir = "/m/{domain}"\n', "{user}"),
        (
            '[local-domain."a.example"]\nmailboxes = ["a"]\nmaildir = "/m/{home}/{user}"\n',
            "unknown placeholder {home}",
        ),
        (
            '[local-domain."a.example"]\nmailboxes = ["a"]\nmaildir = "/m/../{user}"\n',
            "must not contain '..'",
        ),
        ('[local-domain."a.example"]\nmailboxes = ["a/b"]\n', "is not a local part"),
        ('[local-domain."a.example"]\nmailboxes = ["a"]\naliases = { x = "|cat" }\n', "commands"),
        ('[local-domain."a.example"]\nmailboxes = ["a"]\naliases = { x = [] }\n', "empty"),
        (
            '[local-domain."a.example"]\nmailboxes = ["a"]\naliases = { x = "a", X = "a" }\n',
            "defined twice",
        ),
        ('[local-domain."a.example"]\nmailboxes = ["a"]\nrecipient-delimiter = "++"\n', "one of"),
        ('[list."team"]\nmembers = ["a@b.example"]\n', "named by its address"),
        ('[list."team@remote.example"]\nmembers = ["a@b.example"]\n', "not a local domain"),
        (
            '[local-domain."a.example"]\nmailboxes = ["a"]\n[list."l@a.example"]\n',
            "needs 'members'",
        ),
        (
            '[local-domain."a.example"]\nmailboxes = ["a"]\n'
            '[list."l@a.example"]\nmembers = ["a@a.example"]\nallowed-senders = "some"\n',
            "expected 'members', 'anyone'",
        ),
    ],
)
def test_mistakes_are_located(table: str, message: str) -> None:
    problems = errors(table)
    assert any(message in p for p in problems), problems
    assert all(p.startswith("t.toml:") for p in problems)


def test_bad_files_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "aliases").write_text("ok: a\nbad: |/bin/sh\n")
    (tmp_path / "boxes").write_text("alice\n../etc\n")
    problems = errors(
        """
        [local-domain."a.example"]
        mailboxes-file = "boxes"
        aliases-file = "aliases"
        """
    )
    assert any("aliases-file" in p and "aliases:2:" in p and "commands" in p for p in problems)
    assert any("mailboxes-file" in p and "boxes:2:" in p for p in problems)


def test_the_same_domain_twice_is_refused() -> None:
    problems = errors(
        """
        [local-domain."a.example"]
        mailboxes = ["a"]
        [local-domain."A.EXAMPLE."]
        mailboxes = ["b"]
        """
    )
    assert any("same domain" in p for p in problems)
