"""MTA-STS discovery and fetch against a loopback DNS server and a loopback HTTPS server."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from outrider.delivery.mta_sts import MtaStsResolver
from tests.support.dns_server import DnsTestServer
from tests.support.https_server import HttpsResponse, HttpsTestServer
from tests.support.tls import server_context

DOMAIN = "example.test"
TXT_NAME = "_mta-sts.example.test"
POLICY_HOST = "mta-sts.example.test"
PATH = "/.well-known/mta-sts.txt"
POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmx: *.mx.example.test\r\nmax_age: 3600\r\n"  # noqa: E501
NOW = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    dns: DnsTestServer
    https: HttpsTestServer
    ca_file: Path
    clock: Clock
    tmp_path: Path

    def resolver(self, **kw: object) -> MtaStsResolver:
        options: dict[str, object] = {
            "nameservers": [self.dns.nameserver],
            "https_port": self.https.port,
            "ca_file": self.ca_file,
            "fetch_timeout": 2.0,
            "clock": self.clock,
        }
        options.update(kw)
        return MtaStsResolver(**options)  # type: ignore[arg-type]

    @property
    def hits(self) -> int:
        return self.https.hits[PATH]


async def make_env(tmp_path: Path, ca: trustme.CA, cert_ca: trustme.CA, name: str) -> Env:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    dns = DnsTestServer(
        {
            TXT_NAME: {"TXT": ["v=STSv1; id=first;"], "TTL": 60},
            POLICY_HOST: {"A": ["127.0.0.1"]},
            "nosts.test": {"MX": [(10, "mx.nosts.test")]},
        },
        zones=["test"],
    )
    await dns.start()
    https = HttpsTestServer(server_context(cert_ca, name))
    await https.start()
    https.responses[PATH] = HttpsResponse(body=POLICY)
    return Env(dns, https, ca_file, Clock(), tmp_path)


@pytest.fixture
async def env(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[Env]:
    environment = await make_env(tmp_path, ca, ca, POLICY_HOST)
    yield environment
    await environment.https.close()
    await environment.dns.close()


async def test_fetches_enforce_policy(env: Env) -> None:
    policy = await env.resolver().policy_for(DOMAIN)
    assert policy is not None and policy.mode == "enforce" and policy.id == "first"
    assert policy.mx == ("mx.example.test", "*.mx.example.test") and policy.max_age == 3600
    assert policy.fetched_at == NOW and env.hits == 1
    request = env.https.requests[0]
    assert request.line == f"GET {PATH} HTTP/1.1"
    assert request.headers["host"] == f"{POLICY_HOST}:{env.https.port}"
    assert request.headers["connection"] == "close"


async def test_cached_policy_needs_no_second_fetch(env: Env) -> None:
    resolver = env.resolver()
    first = await resolver.policy_for(DOMAIN)
    env.clock.now += 30  # within the TXT TTL: not even DNS
    assert await resolver.policy_for("Example.TEST.") == first
    assert env.hits == 1 and env.dns.query_count(TXT_NAME, "TXT") == 1
    env.clock.now += 60  # TXT TTL over, same id: DNS again, still no HTTP
    assert await resolver.policy_for(DOMAIN) == first
    assert env.hits == 1 and env.dns.query_count(TXT_NAME, "TXT") == 2


async def test_id_change_refetches(env: Env) -> None:
    resolver = env.resolver()
    assert (await resolver.policy_for(DOMAIN)) is not None
    env.dns.set_records(TXT_NAME, "TXT", ["v=STSv1; id=second"])
    env.https.responses[PATH] = HttpsResponse(body=POLICY.replace(b"enforce", b"testing"))
    env.clock.now += 61
    policy = await resolver.policy_for(DOMAIN)
    assert policy is not None and policy.mode == "testing" and policy.id == "second"
    assert env.hits == 2


async def test_failed_refresh_keeps_cached_policy(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    resolver = env.resolver()
    first = await resolver.policy_for(DOMAIN)
    env.dns.set_records(TXT_NAME, "TXT", ["v=STSv1; id=second"])
    env.https.responses[PATH] = HttpsResponse(500, "Server Error", body=b"oops")
    env.clock.now += 61
    assert await resolver.policy_for(DOMAIN) == first
    assert "HTTP status 500" in caplog.text
    env.clock.now += 3600  # cached policy expired, refresh still failing: no policy
    assert await resolver.policy_for(DOMAIN) is None


async def test_txt_removed_keeps_policy_until_expiry(env: Env) -> None:
    resolver = env.resolver()
    first = await resolver.policy_for(DOMAIN)
    env.dns.remove_name(TXT_NAME)
    env.clock.now += 61
    assert await resolver.policy_for(DOMAIN) == first  # RFC 8461 5.1
    env.clock.now += 3600
    assert await resolver.policy_for(DOMAIN) is None


async def test_expired_policy_refetched_with_same_id(env: Env) -> None:
    resolver = env.resolver()
    await resolver.policy_for(DOMAIN)
    env.clock.now += 3601
    policy = await resolver.policy_for(DOMAIN)
    assert policy is not None and policy.fetched_at == env.clock.now and env.hits == 2


async def test_http_404_means_no_policy(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    del env.https.responses[PATH]
    with caplog.at_level(logging.WARNING, "outrider.delivery.mta_sts"):
        assert await env.resolver().policy_for(DOMAIN) is None
    assert "HTTP status 404" in caplog.text


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (
            HttpsResponse(301, "Moved", headers=(("Location", "https://x.test/"),)),
            "HTTP status 301",
        ),
        (HttpsResponse(body=POLICY, content_type="text/html"), "not text/plain"),
        (HttpsResponse(body=POLICY, content_type=None), "not text/plain"),
        (HttpsResponse(body=b"version: STSv1\nmode: enforce\nmax_age: 60\n"), "invalid policy"),
        (HttpsResponse(body=b"x" * (64 * 1024 + 1)), "larger than"),
        (HttpsResponse(body=b"x" * (64 * 1024 + 1), send_length=False), "larger than"),
        (HttpsResponse(body=b"\xff" + POLICY), "invalid policy"),
    ],
)
async def test_bad_responses_mean_no_policy(
    env: Env, caplog: pytest.LogCaptureFixture, response: HttpsResponse, reason: str
) -> None:
    env.https.responses[PATH] = response
    assert await env.resolver().policy_for(DOMAIN) is None
    assert reason in caplog.text


@pytest.mark.parametrize(
    "response",
    [
        HttpsResponse(body=POLICY, chunked=True),
        HttpsResponse(body=POLICY, send_length=False),
        HttpsResponse(body=POLICY, content_type="text/plain; charset=utf-8"),
    ],
)
async def test_body_framings(env: Env, response: HttpsResponse) -> None:
    env.https.responses[PATH] = response
    policy = await env.resolver().policy_for(DOMAIN)
    assert policy is not None and policy.mx[0] == "mx.example.test"


async def test_no_txt_record_no_fetch_negative_cached(env: Env) -> None:
    resolver = env.resolver()
    assert await resolver.policy_for("nosts.test") is None
    env.clock.now += 200
    assert await resolver.policy_for("nosts.test") is None
    assert env.dns.query_count("_mta-sts.nosts.test", "TXT") == 1 and env.hits == 0
    env.clock.now += 200  # past the 5 minute negative TTL
    assert await resolver.policy_for("nosts.test") is None
    assert env.dns.query_count("_mta-sts.nosts.test", "TXT") == 2


@pytest.mark.parametrize(
    "records", [["v=STSv1; id=a", "v=STSv1; id=b"], ["v=STSv1; nonsense"], ["v=spf1 -all"]]
)
async def test_invalid_or_multiple_txt_records(env: Env, records: list[str]) -> None:
    env.dns.set_records(TXT_NAME, "TXT", records)
    assert await env.resolver().policy_for(DOMAIN) is None
    assert env.hits == 0


async def test_dns_failure_means_no_policy(env: Env) -> None:
    env.dns.servfail(TXT_NAME)
    assert await env.resolver().policy_for(DOMAIN) is None
    assert env.hits == 0


async def test_policy_host_without_address(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.dns.remove_name(POLICY_HOST)
    assert await env.resolver().policy_for(DOMAIN) is None
    assert "host not found" in caplog.text


async def test_concurrent_lookups_share_one_fetch(env: Env) -> None:
    env.https.responses[PATH] = HttpsResponse(body=POLICY, delay=0.1)
    resolver = env.resolver()
    results = await asyncio.gather(*(resolver.policy_for(DOMAIN) for _ in range(10)))
    assert len(set(results)) == 1 and results[0] is not None
    assert env.hits == 1 and env.dns.query_count(TXT_NAME, "TXT") == 1


async def test_fetch_timeout(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.https.responses[PATH] = HttpsResponse(body=POLICY, delay=3)
    assert await env.resolver(fetch_timeout=0.3).policy_for(DOMAIN) is None
    assert "timed out" in caplog.text


async def test_persistent_cache(env: Env) -> None:
    cache_dir = env.tmp_path / "sts"
    first = await env.resolver(cache_dir=cache_dir).policy_for(DOMAIN)
    saved = json.loads((cache_dir / "example.test.json").read_text())
    assert saved["id"] == "first" and saved["mode"] == "enforce"
    assert [p.name for p in cache_dir.iterdir()] == ["example.test.json"]  # no temp files left
    # a restarted process: same TXT id, no HTTP fetch
    assert await env.resolver(cache_dir=cache_dir).policy_for(DOMAIN) == first
    assert env.hits == 1
    # the cached policy survives even if the policy host is down after a restart
    env.dns.set_records(TXT_NAME, "TXT", ["v=STSv1; id=second"])
    del env.https.responses[PATH]
    assert await env.resolver(cache_dir=cache_dir).policy_for(DOMAIN) == first


async def test_corrupt_cache_file_ignored(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    cache_dir = env.tmp_path / "sts"
    cache_dir.mkdir()
    (cache_dir / "example.test.json").write_text("{not json")
    policy = await env.resolver(cache_dir=cache_dir).policy_for(DOMAIN)
    assert policy is not None and env.hits == 1 and "ignored" in caplog.text


async def test_domain_literal_has_no_policy(env: Env) -> None:
    assert await env.resolver().policy_for("[127.0.0.1]") is None
    assert env.dns.total_queries == 0


@pytest.mark.parametrize("case", ["wrong-name", "unknown-ca"])
async def test_bad_certificate_means_no_policy(
    tmp_path: Path, ca: trustme.CA, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    cert_ca = trustme.CA() if case == "unknown-ca" else ca
    name = "other.example.test" if case == "wrong-name" else POLICY_HOST
    environment = await make_env(tmp_path, ca, cert_ca, name)
    try:
        with caplog.at_level(logging.WARNING, "outrider.delivery.mta_sts"):
            assert await environment.resolver().policy_for(DOMAIN) is None
        assert "certificate verify failed" in caplog.text
        assert environment.hits == 0
    finally:
        await environment.https.close()
        await environment.dns.close()
