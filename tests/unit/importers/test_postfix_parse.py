"""The Postfix readers: main.cf continuations and expansion, master.cf -o, tables."""

from __future__ import annotations

from pathlib import Path

from outrider.importers.postfix_parse import (
    Param,
    expand,
    parse_main_cf,
    parse_master_cf,
    read_table,
    split_list,
)


def test_main_cf_continuations_comments_and_last_setting_wins() -> None:
    text = (
        "# comment\n"
        "mynetworks = 127.0.0.0/8\n"
        "    10.0.0.0/8,\n"
        "\t192.0.2.0/24\n"
        "\n"
        "myhostname = a.example\n"
        "myhostname = b.example\n"
        "not a setting\n"
    )
    params, bad = parse_main_cf(text)
    assert params["mynetworks"].value == "127.0.0.0/8 10.0.0.0/8, 192.0.2.0/24"
    assert params["mynetworks"].line == 2
    assert (params["myhostname"].value, params["myhostname"].where) == ("b.example", "main.cf:7")
    assert bad == ["main.cf:8: not a 'name = value' line: not a setting"]


def test_expansion_forms_and_postfix_defaults() -> None:
    params, _ = parse_main_cf(
        "myhostname = mx.example.com\n"
        "myorigin = $mydomain\n"
        "greeting = ${myhostname} $(mail_name) ${unset?yes}${unset:no} $$literal\n"
        "loop = $loop\n"
    )
    assert expand("$myorigin", params) == "example.com"
    assert expand(params["greeting"].value, params) == "mx.example.com Postfix no $literal"
    assert expand("$mydestination", params).startswith("mx.example.com, localhost.example.com")
    assert expand("$loop", params) == "$loop"  # gives up instead of recursing forever
    only_domain, _ = parse_main_cf("mydomain = example.org\n")
    assert expand("$myhostname", only_domain) == "localhost.example.org"


def test_split_list_keeps_brace_groups() -> None:
    assert split_list("a, b  c,d") == ["a", "b", "c", "d"]
    assert split_list("hash:/x, inline:{ a=b, {c = d e} }") == [
        "hash:/x",
        "inline:{ a=b, {c = d e} }",
    ]


def test_master_cf_services_and_overrides() -> None:
    text = (
        "# service type private unpriv chroot wakeup maxproc command\n"
        "smtp      inet  n - y - - smtpd\n"
        "submission inet n - y - - smtpd\n"
        "  -o syslog_name=postfix/submission\n"
        "  -o smtpd_tls_security_level=encrypt\n"
        "  -o { smtpd_sasl_auth_enable = yes }\n"
        "127.0.0.1:10025 inet n - n - - smtpd -o content_filter=\n"
        "relay unix - - y - - smtp -v\n"
        "short line\n"
    )
    services, bad = parse_master_cf(text)
    assert [(s.service, s.type, s.command, s.line) for s in services] == [
        ("smtp", "inet", "smtpd", 2),
        ("submission", "inet", "smtpd", 3),
        ("127.0.0.1:10025", "inet", "smtpd", 7),
        ("relay", "unix", "smtp", 8),
    ]
    sub = services[1].overrides
    assert {k: p.value for k, p in sub.items()} == {
        "syslog_name": "postfix/submission",
        "smtpd_tls_security_level": "encrypt",
        "smtpd_sasl_auth_enable": "yes",
    }
    assert services[2].overrides["content_filter"].value == ""
    assert services[3].args == ("-v",)
    assert bad == ["master.cf:9: not a service line: short line"]


def test_tables_read_their_source_file(tmp_path: Path) -> None:
    (tmp_path / "virtual").write_text(
        "# aliases\nsales@example.com  a@example.com,\n    b@example.com\nx@example.com\ty\n"
    )
    table = read_table("hash:/etc/postfix/virtual", tmp_path, "main.cf:3")
    assert table.problem is None
    assert [(e.key, e.value, e.where) for e in table.entries] == [
        ("sales@example.com", "a@example.com, b@example.com", "/etc/postfix/virtual:2"),
        ("x@example.com", "y", "/etc/postfix/virtual:4"),
    ]
    assert [e.key for e in read_table("texthash:virtual", tmp_path, "w").entries] == [
        "sales@example.com",
        "x@example.com",
    ]
    inline = read_table("inline:{ a@x=b@y, { c@x = d@y, e@y } }", tmp_path, "main.cf:9")
    assert [(e.key, e.value) for e in inline.entries] == [("a@x", "b@y"), ("c@x", "d@y, e@y")]
    assert read_table("mysql:/etc/postfix/m.cf", tmp_path, "w").problem is not None
    assert "cannot read" in (read_table("lmdb:/etc/postfix/nope", tmp_path, "w").problem or "")


def test_param_where() -> None:
    assert Param("a", "b", "master.cf", 4).where == "master.cf:4"
