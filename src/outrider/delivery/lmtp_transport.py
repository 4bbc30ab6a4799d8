"""LMTP delivery (RFC 2033) as a :class:`~outrider.delivery.transport.Transport`.

Every domain sent to one LMTP server shares one destination, ``lmtp:HOST:PORT`` or
``lmtp:unix:/path``, so the server's connections and rates are shaped by one delivery
queue (``max-smtp-out``, ``max-msg-rate``, ... of the queue's domain policy), exactly
as for an SMTP destination; the phase timeouts are the policy's SMTP timeouts.

After the data the server answers once per recipient it accepted at RCPT; each answer
becomes that recipient's own reply (phase "data-end"), so one message can be delivered
to one mailbox, deferred for an over-quota one and bounced for a third. A server that
cannot be reached, or refuses the session, defers the batch (a site-level failure:
the queue's window shrinks as for an unreachable MX).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from outrider.config.model import Config, DomainPolicy
from outrider.delivery.lmtp_client import LmtpSession, LmtpTarget
from outrider.delivery.smtp_client import SmtpConnectError
from outrider.delivery.smtp_transport import timeouts_for
from outrider.delivery.transport import DeliveryReport, Opened, RecipientReply, Route
from outrider.message.envelope import Envelope, Recipient
from outrider.policy.outcome import Outcome, Scope, Verdict, classify_reply, local_outcome
from outrider.spool.reader import Body

__all__ = ["LmtpConnection", "LmtpSettings", "LmtpTransport"]

log = logging.getLogger("outrider.delivery.lmtp")


@dataclass(frozen=True, slots=True)
class LmtpSettings:
    """Where LMTP mail goes (a domain's ``transport = "lmtp:..."`` fills this in):
    ``target`` is the server, ``lhlo_name`` the name we give in LHLO (the server's
    host name)."""

    target: LmtpTarget
    lhlo_name: str


class LmtpTransport:
    def __init__(self, settings: LmtpSettings) -> None:
        self.settings = settings
        self.key = f"lmtp:{settings.target.describe()}"

    def destination(self, domain: str, policy: DomainPolicy) -> str:
        return self.key

    async def open(self, route: Route) -> Opened:
        where = self.settings.target.describe()
        try:
            session = await LmtpSession.open(
                self.settings.target,
                lhlo_name=self.settings.lhlo_name,
                timeouts=timeouts_for(route.policy),
            )
        except SmtpConnectError as exc:
            log.info("%s/%s: connect %s failed: %s", route.destination, route.vmta, where, exc)
            return Opened(None, self._connect_failure(route, exc, where))
        return Opened(LmtpConnection(self, session))

    @staticmethod
    def _connect_failure(route: Route, exc: SmtpConnectError, where: str) -> Outcome:
        """Not a verdict on the message: even a 5xx greeting defers (the server is
        ours to fix), but response patterns still see the greeting."""
        if exc.reply is None:
            return local_outcome(451, "4.4.1", f"Connection to LMTP server {where} failed: {exc}")
        route.observe(exc.reply, "greeting", where)
        failure = classify_reply(exc.reply, scope=Scope.SITE, remote_mta=where)
        if failure.verdict is Verdict.TRANSIENT:
            return failure
        return local_outcome(451, "4.4.1", f"LMTP server {where} refused: {exc.reply}")

    def update_config(self, config: Config) -> None:
        return None  # the settings are given whole; a new config builds a new transport


class LmtpConnection:
    def __init__(self, transport: LmtpTransport, session: LmtpSession) -> None:
        self.transport = transport
        self.session: LmtpSession | None = session

    @property
    def usable(self) -> bool:
        return self.session is not None and self.session.usable

    async def deliver(
        self, envelope: Envelope, recipients: list[Recipient], body: Body
    ) -> DeliveryReport:
        session = self.session
        assert session is not None
        outcome = await session.deliver(envelope, recipients, body)
        result = outcome.transaction
        unix = bool(self.transport.settings.target.path)
        return DeliveryReport(
            replies=[
                RecipientReply(r.recipient, r.reply, phase)
                for r, phase in zip(result.results, outcome.phases, strict=True)
            ],
            remote_host=session.remote_host,
            source_ip="" if unix else session.local_address,
            destination_ip="" if unix else session.peer_address,
            peer_dsn=session.extensions.dsn,
            connection_lost=result.connection_lost,
        )

    async def can_carry(self, domain: str) -> bool:
        return True  # one server for every domain this transport carries

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
