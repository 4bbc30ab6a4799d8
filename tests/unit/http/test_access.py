"""Who may do what over HTTP: networks, tokens, CSRF and DNS-rebinding guards."""

from __future__ import annotations

import ipaddress

from outrider.http.access import (
    Need,
    Role,
    Verdict,
    decide,
    host_names_server,
    role_refusal,
    same_origin,
)

ADMIN_NETS = (ipaddress.ip_network("127.0.0.0/8"),)
MONITOR_NETS = (ipaddress.ip_network("192.0.2.0/24"),)
TOKENS: dict[str, Role] = {"adm": "admin", "mon": "monitor", "inj": "inject"}
JSON_POST = {"Host": "127.0.0.1:8080", "Content-Type": "application/json"}


def run(method: str, ip: str, headers: dict[str, str], needs: Need = "monitor") -> Verdict:
    return decide(
        method=method,
        client_ip=ip,
        headers=headers,
        needs=needs,
        admin_networks=ADMIN_NETS,
        monitor_networks=MONITOR_NETS,
        token_role=TOKENS.get,
        server_names=("mta.example.net",),
    )


def test_networks_give_roles() -> None:
    assert run("GET", "127.0.0.1", {"Host": "127.0.0.1:8080"}).role == "admin"
    assert run("GET", "192.0.2.9", {"Host": "192.0.2.1:8080"}).role == "monitor"
    assert run("GET", "::ffff:127.0.0.1", {"Host": "localhost:8080"}).role == "admin"


def test_outsiders_get_401() -> None:
    verdict = run("GET", "198.51.100.1", {"Host": "192.0.2.1"})
    assert (verdict.role, verdict.status) == (None, 401)
    assert "Bearer" in verdict.error


def test_tokens_decide_alone() -> None:
    assert run("GET", "198.51.100.1", {"Host": "x", "Authorization": "Bearer mon"}).role == (
        "monitor"
    )
    # a monitor token from an admin network reads only: credentials presented win
    verdict = run("POST", "127.0.0.1", {**JSON_POST, "Authorization": "Bearer mon"}, "admin")
    assert (verdict.role, verdict.status) == ("monitor", 403)
    ok = run("POST", "198.51.100.1", {**JSON_POST, "Authorization": "Bearer adm"}, "admin")
    assert (ok.role, ok.status) == ("admin", 200)


def test_a_bad_token_is_401_even_from_an_admin_network() -> None:
    verdict = run("GET", "127.0.0.1", {"Host": "127.0.0.1", "Authorization": "Bearer nope"})
    assert (verdict.role, verdict.status) == (None, 401)
    basic = run("GET", "127.0.0.1", {"Host": "127.0.0.1", "Authorization": "Basic eDp5"})
    assert basic.status == 401 and "Bearer" in basic.error


def test_monitor_may_not_act() -> None:
    verdict = run("POST", "192.0.2.9", {**JSON_POST, "Host": "192.0.2.1"}, "admin")
    assert (verdict.role, verdict.status) == ("monitor", 403)


def test_state_changes_need_json_or_the_custom_header() -> None:
    form = {"Host": "127.0.0.1:8080", "Content-Type": "application/x-www-form-urlencoded"}
    assert run("POST", "127.0.0.1", form, "admin").status == 403
    assert run("DELETE", "127.0.0.1", {"Host": "127.0.0.1"}, "admin").status == 403
    custom = {"Host": "127.0.0.1:8080", "X-Outrider-Request": "1"}
    assert run("POST", "127.0.0.1", custom, "admin").status == 200
    charset = {**JSON_POST, "Content-Type": "application/json; charset=utf-8"}
    assert run("POST", "127.0.0.1", charset, "admin").status == 200


def test_cross_origin_state_changes_are_refused() -> None:
    evil = {**JSON_POST, "Origin": "http://evil.example"}
    verdict = run("POST", "127.0.0.1", evil, "admin")
    assert verdict.status == 403 and "cross-origin" in verdict.error
    same = {**JSON_POST, "Origin": "http://127.0.0.1:8080"}
    assert run("POST", "127.0.0.1", same, "admin").status == 200
    assert run("POST", "127.0.0.1", {**JSON_POST, "Origin": "null"}, "admin").status == 403


def test_network_rights_need_a_host_naming_the_server() -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 is same-origin for the browser,
    but its Host header names evil.example, so the network's rights do not apply."""
    rebound = {"Host": "evil.example:8080", "Origin": "http://evil.example:8080"}
    assert run("GET", "127.0.0.1", rebound).status == 403
    assert run("POST", "127.0.0.1", {**rebound, "Content-Type": "application/json"}).status == 403
    assert run("GET", "127.0.0.1", {"Host": "mta.example.net:8080"}).status == 200
    # a token does not depend on the Host: a rebinding page does not know it
    token = {"Host": "anything.example", "Authorization": "Bearer mon"}
    assert run("GET", "127.0.0.1", token).status == 200


def test_host_and_origin_helpers() -> None:
    assert host_names_server("[::1]:8080", ())
    assert host_names_server("127.0.0.1", ())
    assert host_names_server("LOCALHOST:1", ())
    assert not host_names_server(None, ())
    assert not host_names_server("127.0.0.1.nip.io", ())
    assert same_origin("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert same_origin("http://localhost", "localhost:80")
    assert same_origin("http://[::1]:8080", "[::1]:8080")
    assert not same_origin("http://127.0.0.1:8081", "127.0.0.1:8080")
    assert not same_origin("garbage", "127.0.0.1")


def test_the_inject_role_only_injects() -> None:
    def bearer(token: str) -> dict[str, str]:
        return JSON_POST | {"Authorization": f"Bearer {token}"}

    assert run("POST", "198.51.100.1", bearer("inj"), needs="inject").status == 200
    assert run("POST", "127.0.0.1", JSON_POST, needs="inject").status == 200  # admin network
    assert run("POST", "198.51.100.1", bearer("adm"), needs="inject").status == 200
    refused = run("POST", "198.51.100.1", bearer("mon"), needs="inject")
    assert refused.status == 403 and "inject" in refused.error
    for needs in ("monitor", "admin"):
        verdict = run("GET", "198.51.100.1", bearer("inj"), needs=needs)  # type: ignore[arg-type]
        assert verdict.status == 403 and "only submit" in verdict.error
    assert role_refusal("monitor", "monitor") == "" and role_refusal("admin", "inject") == ""
