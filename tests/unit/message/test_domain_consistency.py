"""One domain is one domain everywhere: ``user@straße.test`` and
``user@xn--strae-oqa.test`` get the same relay decision, policy, queue, MX look-up name,
postmaster, loop and MTA-STS answer; ``strasse.test`` is another domain throughout.

Before, the relay check, the config and the DSN builder used Python's IDNA 2003 codec
(ß -> ss) while delivery used IDNA 2008, so a relay domain or policy for ``straße.test``
matched ``strasse.test`` and not the mail delivered to ``xn--strae-oqa.test``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from outrider.auth.rates import UserRateLimiter
from outrider.config.loader import parse_config
from outrider.config.model import ConfigError
from outrider.delivery.dns import DnsError, DnsErrorKind, MxResolver
from outrider.delivery.dns import normalize_domain as dns_name
from outrider.delivery.loops import names_host
from outrider.delivery.smtp_transport import SmtpTransport
from outrider.delivery.tls_policy import mx_allowed
from outrider.intake import CONTINUE, IntakePipeline, Verdict
from outrider.intake.build import intake_checks
from outrider.intake.checks import BAD_RECIPIENT_DOMAIN, PostmasterAddress, RecipientDomain
from outrider.intake.vmta import VmtaTable, choose_vmta
from outrider.message.envelope import Envelope, Recipient
from outrider.message.ids import new_queue_id
from outrider.queue.operator import Operator
from outrider.queue.scheduler import Scheduler
from outrider.smtp.replies import RELAY_DENIED, Reply
from tests.support.memory_spool import MemorySpool
from tests.unit.intake.support import SMTP

SAME = ("straße.test", "STRAßE.Test", "xn--strae-oqa.test", "XN--STRAE-OQA.test.")
OTHER = "strasse.test"

CONFIG = """
[server]
hostname = "mta.bücher.test"
state-dir = "{state}"
[dns]
nameservers = ["127.0.0.1:9"]
[[listener]]
address = "127.0.0.1:0"
relay-networks = ["10.9.9.9/32"]
[relay]
domains = ["straße.test"]
[virtual-mta.idn]
smtp-source-host = "127.0.0.10"
[sender-domain."straße.test"]
virtual-mta = "idn"
[domain."straße.test"]
route = "127.0.0.1:9"
max-smtp-out = 3
[domain."strasse.test"]
route = "127.0.0.1:9"
max-smtp-out = 5
"""


@pytest.fixture
def config_text(tmp_path: Path) -> str:
    return CONFIG.format(state=tmp_path)


def test_relay_domain_and_policy_match_every_spelling(config_text: str) -> None:
    config = parse_config(config_text)
    assert config.relay.domains == frozenset({"xn--strae-oqa.test"})
    pipeline = IntakePipeline(intake_checks(config, None, UserRateLimiter()))
    for domain in SAME:
        assert config.is_relay_domain(domain)
        assert config.policy_for(domain).max_smtp_out == 3
        assert pipeline.at_rcpt(SMTP, "", f"user@{domain}") is CONTINUE
    assert not config.is_relay_domain(OTHER)
    assert config.policy_for(OTHER).max_smtp_out == 5
    refused = pipeline.at_rcpt(SMTP, "", f"user@{OTHER}")
    assert isinstance(refused, Verdict) and refused.reply == RELAY_DENIED


def test_a_config_error_names_the_key() -> None:
    base = '[server]\nhostname = "mx.test"\n[[listener]]\naddress = "127.0.0.1:0"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(base + '[domain."☃.test"]\nmax-smtp-out = 1\n', "t.toml")
    assert str(info.value).startswith('t.toml:5: domain."☃.test": invalid domain name')
    with pytest.raises(ConfigError) as info:
        parse_config(base + '[relay]\ndomains = ["ok.test", "😀.test"]\n', "t.toml")
    assert str(info.value).startswith("t.toml:6: relay.domains[1]: invalid domain name '😀.test'")


async def test_every_spelling_is_routed_to_one_queue(config_text: str) -> None:
    config = parse_config(config_text)
    scheduler = Scheduler(
        config=config,
        spool=MemorySpool(),  # type: ignore[arg-type]
        transports=SmtpTransport(config, MxResolver(["127.0.0.1:9"], timeout=0.2, lifetime=0.5)),
    )
    operator = Operator(scheduler)
    operator.pause_queue("xn--strae-oqa.test")  # held after routing: no connection is made
    operator.pause_queue(OTHER)
    rcpts = [Recipient(f"u{i}@{d}") for i, d in enumerate((*SAME, OTHER))]
    env = Envelope(new_queue_id(), "s@x.test", rcpts, time.time())
    env.vmta = "default"
    scheduler.submit(env, b"Subject: x\r\n\r\nx\r\n")
    try:
        queues = {key: q.policy.max_smtp_out for (key, _), q in scheduler.queues.items()}
        assert queues == {"xn--strae-oqa.test": 3, OTHER: 5}
        [idn_item] = scheduler.holds.domains["xn--strae-oqa.test"]  # one item, one transaction
        assert [r.address for r in idn_item.recipients] == [r.address for r in rcpts[:4]]
        [other_item] = scheduler.holds.domains[OTHER]
        assert [r.address for r in other_item.recipients] == [f"u4@{OTHER}"]
    finally:
        await scheduler.stop(1.0)


def test_mx_lookups_use_the_a_label() -> None:
    assert {dns_name(d) for d in SAME} == {"xn--strae-oqa.test"}
    assert dns_name(OTHER) == OTHER
    with pytest.raises(DnsError) as info:
        dns_name("☃.test")
    assert info.value.kind is DnsErrorKind.NXDOMAIN


def test_sender_domain_virtual_mta(config_text: str) -> None:
    table = VmtaTable.from_config(parse_config(config_text))
    for domain in SAME:
        chosen = choose_vmta(table, sender=f"s@{domain}", requested=None, listener_default=None)
        assert chosen == "idn"
    chosen = choose_vmta(table, sender=f"s@{OTHER}", requested=None, listener_default=None)
    assert chosen == "default"


def test_postmaster_loop_and_mta_sts_compare_normal_forms(config_text: str) -> None:
    hostname = parse_config(config_text).server.hostname
    assert hostname == "mta.xn--bcher-kva.test"
    postmaster = PostmasterAddress(hostname)
    assert postmaster.names("postmaster@MTA.Bücher.test.")
    assert postmaster.names("Postmaster@mta.xn--bcher-kva.test")
    assert not postmaster.names("postmaster@mta.bucher.test")
    assert names_host(Reply(220, "", "mta.bücher.test ESMTP"), hostname)
    assert not names_host(Reply(220, "", "mta.bucher.test ESMTP"), hostname)
    assert mx_allowed("mx1.xn--strae-oqa.test", ["*.straße.test"])
    assert mx_allowed("MX.STRAßE.test.", ["mx.xn--strae-oqa.test"])
    assert not mx_allowed("mx1.strasse.test", ["*.straße.test"])


def test_a_recipient_domain_that_is_no_domain_is_refused_at_rcpt() -> None:
    check = RecipientDomain()
    assert (BAD_RECIPIENT_DOMAIN.code, BAD_RECIPIENT_DOMAIN.enhanced) == (553, "5.1.2")
    for bad in ("u@☃.test", "u@😀.test", "u@" + "x" * 64 + ".test", "u@xn--zz.test"):
        assert check.at_rcpt(SMTP, "", bad).reply == BAD_RECIPIENT_DOMAIN
    for good in ("u@straße.test", "u@[192.0.2.1]", "postmaster", "u@_x.test"):
        assert check.at_rcpt(SMTP, "", good) is CONTINUE
