"""Mail for local domains: into Maildir or to an LMTP server, and list posts re-stored.

:class:`LocalDelivery` is the scheduler's transport selector: a local domain gets its
own transport (Maildir or LMTP, as its ``transport`` key says), every other domain the
remote (SMTP) one, so mail for a local domain is never relayed. A ``[bounce-domain]``
goes to the ``feedback`` transport (:mod:`outrider.feedback.transport`), which consumes
it. Within a local domain a list's address is a recipient like any other; its connection
hands list posts to the :class:`~outrider.delivery.list_transport.ListExpander` and the
rest to the mailbox transport, and reports them together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from outrider.config.model import Config, DomainPolicy, LocalDomainSettings
from outrider.delivery.list_transport import ListExpander
from outrider.delivery.lmtp_client import LmtpTarget
from outrider.delivery.lmtp_transport import LmtpSettings, LmtpTransport
from outrider.delivery.mailbox_path import default_mailbox_name
from outrider.delivery.maildir_transport import MaildirSettings, MaildirTransport
from outrider.delivery.srs_transport import SrsTransport
from outrider.delivery.transport import (
    Connection,
    ConnectionWrapper,
    DeliveryReport,
    Opened,
    Route,
    Transport,
)
from outrider.local.directory import Directory, Kind
from outrider.message.envelope import Envelope, Recipient
from outrider.policy.outcome import Outcome
from outrider.spool.reader import Body


class LocalConnection(ConnectionWrapper):
    def __init__(self, inner: Connection, lists: ListExpander, is_list: Callable[[str], bool]):
        super().__init__(inner)
        self.lists = lists
        self.is_list = is_list

    async def deliver(
        self, envelope: Envelope, recipients: list[Recipient], body: Body
    ) -> DeliveryReport:
        posts = [r for r in recipients if self.is_list(r.address)]
        if not posts:
            return await self.inner.deliver(envelope, recipients, body)
        rest = [r for r in recipients if not self.is_list(r.address)]
        report = await self.inner.deliver(envelope, rest, body) if rest else None
        listed = await self.lists.post(envelope, posts, body)
        if report is None:
            return listed
        report.replies.extend(listed.replies)
        return report


class LocalTransport:
    """A local domain's mailbox transport, with its list posts handled on the side."""

    def __init__(self, inner: Transport, owner: LocalDelivery):
        self.inner = inner
        self.owner = owner

    def destination(
        self, domain: str, policy: DomainPolicy
    ) -> str | Outcome | Awaitable[str | Outcome]:
        return self.inner.destination(domain, policy)

    async def open(self, route: Route) -> Opened:
        opened = await self.inner.open(route)
        if opened.connection is None or self.owner.lists is None:
            return opened
        return Opened(LocalConnection(opened.connection, self.owner.lists, self._is_list))

    def _is_list(self, address: str) -> bool:
        return self.owner.directory().lookup(address).kind is Kind.LIST

    def update_config(self, config: Config) -> None:
        self.inner.update_config(config)


class LocalDelivery:
    """The transport selector: local domains to their mailboxes, the rest to ``remote``."""

    def __init__(
        self,
        config: Config,
        remote: Transport,
        directory: Callable[[], Directory],
        lists: ListExpander | None = None,
    ) -> None:
        """``lists`` may be attached later (it stores through an intake whose sink is
        the scheduler this selector is given to)."""
        self.remote = remote
        self.lists = lists
        self.directory = directory
        self.config = config
        self.local: dict[str, Transport] = {}
        # Attached by the daemon (it needs the suppression list and the event bus).
        self.feedback: Transport | None = None
        # Remote mail goes through the SRS wrapper: it rewrites the sender of forwarded
        # recipients when [srs] is on, and passes everything through otherwise.
        self.outbound = SrsTransport(remote, lambda: self.directory().srs)
        self.update_config(config)

    def __call__(self, domain: str, policy: DomainPolicy) -> Transport:
        found = self.local.get(domain)
        if found is not None:
            return found
        if self.feedback is not None and domain in self.config.bounce_domains:
            return self.feedback
        return self.outbound

    def update_config(self, config: Config) -> None:
        """A reload: local domains added, changed or removed take effect for new queues."""
        self.config = config
        self.local = {
            name: LocalTransport(self._mailboxes(settings, config), self)
            for name, settings in config.local_domains.items()
        }

    def _mailboxes(self, settings: LocalDomainSettings, config: Config) -> Transport:
        transport = settings.transport
        if transport.kind == "lmtp":
            target = LmtpTarget(transport.host, transport.port, transport.path)
            return LmtpTransport(LmtpSettings(target, config.server.hostname))
        return MaildirTransport(
            MaildirSettings(
                path=settings.maildir,
                quota=settings.quota,
                mailbox_name=self._mailbox_name,
                hostname=config.server.hostname,
            )
        )

    def _mailbox_name(self, address: str) -> str:
        found = self.directory().lookup(address)
        return found.mailbox if found.kind is Kind.MAILBOX else default_mailbox_name(address)
