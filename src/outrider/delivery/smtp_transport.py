"""SMTP delivery as a :class:`~outrider.delivery.transport.Transport`.

Everything specific to talking SMTP to MX hosts lives here: MX resolution and the
mx-rollup destination key, MTA-STS and per-domain TLS requirements, trying the MX
hosts in order (a 5xx greeting moves to the next), stepping TLS down as policy allows,
"421 means the MX is unavailable" (the same batch goes to the next MX), and refusing to
deliver to ourselves (:mod:`outrider.delivery.loops`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from typing import cast

from outrider.config.model import Config, DomainPolicy
from outrider.delivery.dns import DnsError, DnsErrorKind, MxResolver
from outrider.delivery.loops import OwnAddresses, drop_own, loop_outcome, names_host
from outrider.delivery.mta_sts import MtaStsResolver
from outrider.delivery.smtp_client import (
    SmtpConnectError,
    SmtpSession,
    SmtpTimeouts,
    TransactionResult,
)
from outrider.delivery.targets import Target, resolve_targets
from outrider.delivery.tls_policy import (
    TlsRequirement,
    TlsVerify,
    mx_refused_reply,
    tls_requirement,
)
from outrider.delivery.transport import DeliveryReport, Opened, RecipientReply, Route
from outrider.message.envelope import Envelope, Recipient
from outrider.policy.outcome import Outcome, Scope, Verdict, classify_reply, local_outcome
from outrider.spool.reader import Body

log = logging.getLogger("outrider.delivery")

_VERIFY_RANK = {"none": 0, "ca": 1, "ca+hostname": 2}


def timeouts_for(policy: DomainPolicy) -> SmtpTimeouts:
    return SmtpTimeouts(
        connect=policy.connect_timeout,
        greeting=policy.smtp_greeting_timeout,
        ehlo=policy.smtp_command_timeout,
        mail=policy.smtp_command_timeout,
        rcpt=policy.smtp_command_timeout,
        data_init=policy.smtp_data_init_timeout,
        data_block=policy.smtp_data_block_timeout,
        data_done=policy.smtp_data_termination_timeout,
        rset=policy.smtp_command_timeout,
        starttls=policy.smtp_command_timeout,  # the STARTTLS reply, then the handshake
    )


def dns_outcome(exc: DnsError) -> Outcome:
    """A DNS verdict on one recipient domain: it never reaches other domains' mail."""
    domain = Scope.DOMAIN
    if exc.kind is DnsErrorKind.NULL_MX:
        text = f"Domain {exc.domain} does not accept mail (null MX)"
        return local_outcome(556, "5.1.10", text, scope=domain)
    if exc.kind is DnsErrorKind.NXDOMAIN:
        return local_outcome(550, "5.1.2", f"Domain {exc.domain} does not exist", scope=domain)
    if exc.kind is DnsErrorKind.NO_ADDRESSES:
        text = f"Domain {exc.domain} has no mail server address"
        return local_outcome(550, "5.4.4", text, scope=domain)
    text = f"DNS lookup for {exc.domain} failed: {exc.detail}"
    return local_outcome(451, "4.4.3", text, scope=domain)


def tls_satisfied(session: SmtpSession, have: TlsRequirement, need: TlsRequirement) -> bool:
    """Whether a session opened under ``have`` may carry mail that needs ``need``."""
    if not need.permits_mx(session.remote_host):
        return False
    if need.mode != "required":
        return True
    if session.tls_version is None:
        return False
    if need.verify == "none":
        return True
    return (
        session.tls_verified
        and _VERIFY_RANK[have.verify] >= _VERIFY_RANK[need.verify]
        and have.ca_file == need.ca_file
    )


def tls_profile(policy: DomainPolicy) -> str:
    """Rollup key suffix that keeps domains with different TLS settings apart ("" for the
    default opportunistic, unverified TLS, so most rolled-up queues keep their name)."""
    if policy.use_starttls and not policy.require_starttls and policy.tls_verify == "none":
        return ""
    mode = "required" if policy.require_starttls else "may" if policy.use_starttls else "none"
    return f"#tls={mode},{policy.tls_verify},{policy.tls_ca_file or ''}"


def rollup_key(hosts: Iterable[str]) -> str:
    return "mx:" + ",".join(sorted(set(hosts)))


def phase_of(result: TransactionResult, reply: object) -> str:
    if result.data_reply is not None and reply is result.data_reply:
        return "data-end"
    if result.mail_reply is not None and reply is result.mail_reply:
        return "mail"
    return "rcpt"


class SmtpTransport:
    def __init__(self, config: Config, resolver: MxResolver) -> None:
        self.config = config
        self.resolver = resolver
        self.mta_sts = self._mta_sts_resolver(config)
        self.own = OwnAddresses(listener.address for listener in config.listeners)

    @staticmethod
    def _mta_sts_resolver(config: Config) -> MtaStsResolver | None:
        settings = config.mta_sts
        if not settings.enabled:
            return None
        return MtaStsResolver(
            nameservers=config.dns.nameservers or None,
            https_port=settings.https_port,
            ca_file=settings.ca_file,
            fetch_timeout=settings.fetch_timeout,
            cache_dir=settings.cache_dir,
            dns_timeout=config.dns.timeout,
        )

    def update_config(self, config: Config) -> None:
        if config.mta_sts != self.config.mta_sts or config.dns != self.config.dns:
            self.mta_sts = self._mta_sts_resolver(config)
        if config.listeners != self.config.listeners:
            self.own = OwnAddresses(listener.address for listener in config.listeners)
        self.config = config

    # -- destinations ------------------------------------------------------------------------
    def destination(
        self, domain: str, policy: DomainPolicy
    ) -> str | Outcome | Awaitable[str | Outcome]:
        """With mx-rollup, domains served by the same MX hosts share one destination;
        implicit-MX and MTA-STS domains keep their own (STS binds one domain)."""
        if policy.route is not None or not policy.mx_rollup:
            return domain
        return self._rollup_destination(domain, policy)

    async def _rollup_destination(self, domain: str, policy: DomainPolicy) -> str | Outcome:
        try:
            hosts = await self.resolver.resolve_mx(domain)
        except DnsError as exc:
            return dns_outcome(exc)
        if (hosts and hosts[0].implicit) or await self._has_sts_policy(domain, policy):
            return domain
        return rollup_key(h.name for h in hosts) + tls_profile(policy)

    async def _has_sts_policy(self, domain: str, policy: DomainPolicy) -> bool:
        if self.mta_sts is None or not policy.mta_sts:
            return False
        try:
            sts = await self.mta_sts.policy_for(domain)
        except Exception:  # tls_for logs it again at delivery
            return False
        return sts is not None and sts.mode in ("enforce", "testing")

    async def tls_for(self, domain: str, policy: DomainPolicy) -> TlsRequirement:
        """The domain's TLS policy, tightened by its MTA-STS policy when it has one."""
        sts = None
        if self.mta_sts is not None and policy.mta_sts and policy.route is None:
            try:
                sts = await self.mta_sts.policy_for(domain)
            except Exception:  # a broken policy host must not stop delivery
                log.exception("MTA-STS lookup for %s failed", domain)
        return tls_requirement(
            use_starttls=policy.use_starttls,
            require_starttls=policy.require_starttls,
            tls_verify=cast(TlsVerify, policy.tls_verify),  # validated by the config loader
            tls_ca_file=policy.tls_ca_file,
            sts=sts,
        )

    # -- connections -------------------------------------------------------------------------
    async def open(self, route: Route) -> Opened:
        policy = route.policy
        try:
            targets = await resolve_targets(
                route.domain, policy.route, self.resolver, mx_port=policy.smtp_port
            )
        except DnsError as exc:
            return Opened(None, dns_outcome(exc))
        if policy.bounce_upon_no_mx and targets and targets[0].implicit:
            text = f"Domain {route.domain} has no MX record"
            return Opened(None, local_outcome(550, "5.4.4", text, scope=Scope.DOMAIN))
        if policy.route is None and self.own:
            targets, looped = self._drop_own(route, targets)
            if looped and not targets:
                return Opened(None, loop_outcome(route.domain))
        tls = await self.tls_for(route.domain, policy)
        remaining = list(targets)
        session, failure = await self._open_session(route, remaining, tls)
        if session is None:
            return Opened(None, failure)
        return Opened(SmtpConnection(self, route, session, tls, remaining, {route.domain}))

    def _drop_own(self, route: Route, targets: list[Target]) -> tuple[list[Target], bool]:
        """The targets left once our own listeners (and worse MX hosts) are dropped."""
        own = self.own
        kept, looped = drop_own(
            targets, lambda t: own.contains(t.address, t.port), lambda t: t.preference
        )
        if looped:
            ours = ", ".join(
                f"{t.describe()}:{t.port}" for t in targets if own.contains(t.address, t.port)
            )
            if kept:
                log.info("%s: MX %s is this server; trying better MX hosts", route.domain, ours)
            else:
                log.warning(
                    "%s: mail for %s loops back to myself (MX %s is this server)",
                    route.destination,
                    route.domain,
                    ours,
                )
        return kept, looped

    def _greets_as_us(self, session: SmtpSession) -> bool:
        hostname = self.config.server.hostname
        return names_host(session.greeting, hostname) or names_host(session.ehlo_reply, hostname)

    async def _open_session(
        self, route: Route, remaining: list[Target], tls: TlsRequirement
    ) -> tuple[SmtpSession | None, Outcome]:
        """Connect to the first target that answers; consumes ``remaining`` as it goes.
        A server that greets with our own host name is us: the mail loops (unless the
        domain has an explicit route)."""
        failure = local_outcome(451, "4.4.1", "No mail server could be reached")
        timeouts = timeouts_for(route.policy)
        while remaining:
            target = remaining.pop(0)
            if not tls.permits_mx(target.host):
                failure = classify_reply(mx_refused_reply(target.host), scope=Scope.SITE)
                continue
            try:
                session = await self._connect(route, target, timeouts, tls)
            except SmtpConnectError as exc:
                name = f"{route.destination}/{route.vmta}"
                log.info("%s: connect %s failed: %s", name, target.describe(), exc)
                if exc.reply is not None:
                    route.observe(exc.reply, "greeting", target.host)
                    failure = classify_reply(exc.reply, scope=Scope.SITE, remote_mta=target.host)
                    if failure.verdict is not Verdict.TRANSIENT:
                        # A 5xx greeting is not a verdict on the message: try the next host,
                        # and if none is left, defer (Postfix's smtp_skip_5xx_greeting).
                        text = f"{target.describe()} refused: {exc.reply}"
                        failure = local_outcome(451, "4.4.1", text)
                else:
                    text = f"Connection to {target.describe()} failed: {exc}"
                    failure = local_outcome(451, "4.4.1", text)
                continue
            if route.policy.route is None and self._greets_as_us(session):
                log.warning(
                    "%s: mail for %s loops back to myself (%s greeted with our hostname %s)",
                    route.destination,
                    route.domain,
                    target.describe(),
                    self.config.server.hostname,
                )
                await session.close()
                return None, loop_outcome(route.domain)
            return session, failure
        return None, failure

    async def _connect(
        self, route: Route, target: Target, timeouts: SmtpTimeouts, tls: TlsRequirement
    ) -> SmtpSession:
        """Connect from the route's virtual MTA under the TLS requirement; after a TLS
        failure, step down as the requirement allows (verified → unverified → clear for
        opportunistic TLS; never for required TLS, which defers)."""
        vmta = self.config.virtual_mtas.get(route.vmta)
        source = vmta.source_ip if vmta is not None else None
        helo = vmta.ehlo_name if vmta is not None else self.config.server.hostname
        requirement: TlsRequirement | None = tls
        while True:
            assert requirement is not None
            try:
                return await SmtpSession.connect(
                    target.address,
                    target.port,
                    helo_name=helo,
                    timeouts=timeouts,
                    source_address=source,
                    use_starttls=requirement.mode != "none",
                    server_hostname=target.host,
                    tls=requirement,
                )
            except SmtpConnectError as exc:
                if not exc.tls_failure:
                    raise
                requirement = requirement.fallback()
                if requirement is None:
                    raise
                log.warning(
                    "TLS with %s failed (%s); retrying with %s TLS",
                    target.describe(),
                    exc,
                    requirement.mode,
                )


class SmtpConnection:
    def __init__(
        self,
        transport: SmtpTransport,
        route: Route,
        session: SmtpSession,
        tls: TlsRequirement,
        remaining: list[Target],
        tls_checked: set[str],
    ) -> None:
        self.transport = transport
        self.route = route
        self.session: SmtpSession | None = session
        self.tls = tls
        self.remaining = remaining  # MX hosts not tried yet, for 421-means-next-MX
        self.tls_checked = tls_checked

    @property
    def usable(self) -> bool:
        return self.session is not None and self.session.usable

    async def deliver(
        self, envelope: Envelope, recipients: list[Recipient], body: Body
    ) -> DeliveryReport:
        policy = self.route.policy
        while True:
            session = self.session
            assert session is not None
            result = await session.send(envelope, recipients, body)
            if (
                policy.smtp_421_means_mx_unavailable
                and result.connection_lost
                and self.remaining
                and any(r.reply.code == 421 for r in result.results)
            ):
                # The MX said it is unavailable: the same batch goes to the next MX.
                log.info(
                    "%s: 421 from %s; trying the next MX",
                    self.route.destination,
                    session.remote_host,
                )
                await session.close()
                self.session, failure = await self.transport._open_session(
                    self.route, self.remaining, self.tls
                )
                if self.session is None:
                    return DeliveryReport(failure=failure, connection_lost=True)
                continue
            return DeliveryReport(
                replies=[
                    RecipientReply(r.recipient, r.reply, phase_of(result, r.reply))
                    for r in result.results
                ],
                remote_host=session.remote_host,
                source_ip=session.local_address,
                destination_ip=session.peer_address,
                peer_dsn=session.extensions.dsn,
                esmtp=" ".join(session.extensions.keywords),
                connection_lost=result.connection_lost,
            )

    async def wait_accepting(self) -> bool:
        """Wait until the next message may be pipelined behind the one in flight (the
        server offers PIPELINING and that message's end of data is out); False when
        it may not, and the worker waits for the reply first. The worker races this
        with the delivery in flight (which may finish first). Not with
        ``smtp-421-means-mx-unavailable`` and MX hosts left: a 421 then moves the
        message in flight to another session, which the next one must not race."""
        session = self.session
        if session is None:
            return False
        if self.route.policy.smtp_421_means_mx_unavailable and self.remaining:
            return False
        return await session.wait_accepting()

    async def can_carry(self, domain: str) -> bool:
        """A rolled-up destination mixes domains: this session was set up for another
        domain's TLS policy and may not meet this one's (MTA-STS, required TLS)."""
        if domain in self.tls_checked:
            return True
        if self.session is None:
            return False
        policy = self.transport.config.policy_for(
            domain,
            self.route.vmta if self.route.vmta in self.transport.config.virtual_mtas else None,
        )
        need = await self.transport.tls_for(domain, policy)
        if not tls_satisfied(self.session, self.tls, need):
            return False
        self.tls_checked.add(domain)
        return True

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
