"""Mail for the postmaster (RFC 5321 section 4.5.1): accepted from anyone, even where the
client may not relay, and queued for ``[server] postmaster``."""

from __future__ import annotations

from dataclasses import replace

import pytest

from outrider.config.loader import parse_config
from outrider.config.model import ConfigError
from outrider.intake import (
    Accepted,
    Check,
    Intake,
    IntakePipeline,
    MailEnvelope,
    MailRecipient,
    Rejected,
    Submission,
    Verdict,
)
from outrider.intake.build import build_intake
from outrider.intake.checks import PostmasterAddress, Relay
from outrider.message.envelope import Envelope, Notify
from outrider.smtp.replies import LOCAL_ERROR, RELAY_DENIED, Reply
from tests.support.memory_spool import MemorySpool
from tests.unit.intake.support import CONTENT, SMTP

CONFIG = """
[server]
hostname = "MX.Example.test"
{postmaster}
[[listener]]
address = "127.0.0.1:0"
relay-networks = []
[relay]
domains = ["one.test"]
"""


class Sink:
    def accept(self, envelope: Envelope, body: bytes) -> None:
        pass


def intake_for(postmaster: str | None) -> Intake:
    line = f'postmaster = "{postmaster}"' if postmaster is not None else ""
    config = parse_config(CONFIG.format(postmaster=line))
    return build_intake(config, spool=MemorySpool(), sink=Sink(), users=None)


def rcpt_reply(intake: Intake, recipient: str) -> Reply | None:
    verdict = intake.check_rcpt(SMTP, "s@outside.test", recipient)
    assert isinstance(verdict, Verdict)
    return verdict.reply


async def queued(intake: Intake, *recipients: MailRecipient) -> list[MailRecipient]:
    """What the intake stores for an anonymous client's message to ``recipients``."""
    for rcpt in recipients:
        assert rcpt_reply(intake, rcpt.address) is None, f"{rcpt.address} refused"
    result = await intake.submit(SMTP, MailEnvelope("s@outside.test", recipients), CONTENT)
    assert isinstance(result, Accepted)
    return [MailRecipient(r.address, r.notify, r.orcpt) for r in result.envelope.recipients]


@pytest.mark.parametrize(
    "recipient",
    [
        "Postmaster",
        "postmaster",
        "POSTMASTER",
        "postmaster@mx.example.test",
        "PostMaster@MX.example.test.",
    ],
)
async def test_an_outsider_may_write_to_the_postmaster(recipient: str) -> None:
    intake = intake_for("hostmaster@corp.test")
    [stored] = await queued(intake, MailRecipient(recipient))
    assert stored.address == "hostmaster@corp.test"


@pytest.mark.parametrize(
    "recipient",
    ["postmaster@outside.test", "postmaster@example.test", "postmasters", "x@mx.example.test"],
)
def test_only_the_postmaster_of_this_host_escapes_the_relay_check(recipient: str) -> None:
    assert rcpt_reply(intake_for("hostmaster@corp.test"), recipient) == RELAY_DENIED


async def test_orcpt_and_notify_stay_as_given_and_other_recipients_are_untouched() -> None:
    intake = intake_for("hostmaster@corp.test")
    stored = await queued(
        intake,
        MailRecipient("u@one.test"),
        MailRecipient("Postmaster", Notify.FAILURE, "rfc822;Postmaster"),
    )
    assert stored == [
        MailRecipient("u@one.test"),
        MailRecipient("hostmaster@corp.test", Notify.FAILURE, "rfc822;Postmaster"),
    ]


async def test_the_postmaster_is_queued_once_whatever_names_the_client_used() -> None:
    intake = intake_for("hostmaster@corp.test")
    trusted = replace(SMTP, client_trusted=True)
    mail = MailEnvelope(
        "s@outside.test",
        (
            MailRecipient("Postmaster"),
            MailRecipient("hostmaster@corp.test"),
            MailRecipient("postmaster@mx.example.test"),
        ),
    )
    result = await intake.submit(trusted, mail, CONTENT)
    assert isinstance(result, Accepted)
    assert [r.address for r in result.envelope.recipients] == ["hostmaster@corp.test"]


async def test_unset_it_is_postmaster_at_the_host_name() -> None:
    intake = intake_for(None)
    stored = await queued(
        intake, MailRecipient("Postmaster"), MailRecipient("POSTMASTER@mx.example.test")
    )
    assert [r.address for r in stored] == ["postmaster@mx.example.test"]


def test_the_config_takes_an_address() -> None:
    config = parse_config(CONFIG.format(postmaster='postmaster = "Admin@BÜCHER.test"'))
    assert config.server.postmaster == "Admin@xn--bcher-kva.test"
    assert parse_config(CONFIG.format(postmaster="")).server.postmaster is None
    for bad in ("Postmaster", "a b@c.test", "<a@c.test>", "a@", "@c.test", "a@[192.0.2.1]"):
        with pytest.raises(ConfigError, match=r"server\.postmaster"):
            parse_config(CONFIG.format(postmaster=f'postmaster = "{bad}"'))


def test_postmaster_names() -> None:
    names = PostmasterAddress("mx.test").names
    assert names("Postmaster") and names("postmaster@MX.TEST") and names("postmaster@mx.test.")
    assert not names("postmaster@mx.test.example") and not names('"postmaster"x@mx.test')
    assert PostmasterAddress("mx.test").address == "postmaster@mx.test"
    relay = Relay([], PostmasterAddress("mx.test"))
    assert relay.at_rcpt(SMTP, "", "Postmaster").reply is None
    assert Relay([]).at_rcpt(SMTP, "", "Postmaster").reply == RELAY_DENIED  # no exemption given


class Broken(Check):
    def map_recipient(self, submission: Submission, recipient: str) -> str:
        raise RuntimeError("bug")


async def test_a_mapping_that_fails_refuses_the_message_for_now() -> None:
    spool = MemorySpool()
    intake = intake_for("hostmaster@corp.test")
    intake.spool = spool
    intake.pipeline = IntakePipeline([*intake.pipeline.checks, Broken()])
    mail = MailEnvelope("s@outside.test", (MailRecipient("u@one.test"),))
    assert await intake.submit(SMTP, mail, CONTENT) == Rejected(LOCAL_ERROR)
    assert spool.bodies == {}
