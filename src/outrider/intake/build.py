"""Building the process's intake from the config: the one place checks are registered.

The daemon (single process) and each receiver process build their intake here and
differ only by the sink: the scheduler itself, or the hand-off to the delivery
process. A new check is added to :func:`intake_checks`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from outrider.auth.rates import UserRateLimiter
from outrider.config.model import Config
from outrider.dkim.step import DkimSigner, signer_from_config
from outrider.feedback.step import verp_from_config
from outrider.intake.checks import (
    AddressLiterals,
    HopLimit,
    Postmaster,
    PostmasterAddress,
    RecipientDomain,
    Relay,
    SenderOwnership,
    SenderRights,
    UserLimits,
    UserRate,
)
from outrider.intake.core import Intake, MessageStore
from outrider.intake.local import LocalRecipients
from outrider.intake.pipeline import Check, IntakePipeline
from outrider.intake.sink import Sink
from outrider.intake.vmta import VmtaTable
from outrider.local.build import LiveDirectory
from outrider.message.ids import new_queue_id as fresh_queue_id
from outrider.spool.disk import DiskSpool
from outrider.unsubscribe.step import UnsubscribeStep, step_from_config

log = logging.getLogger("outrider.intake")


class UserRecords(SenderRights, UserLimits, Protocol):
    """What the standard checks read from the user store."""


def intake_checks(config: Config, users: UserRecords | None, rates: UserRateLimiter) -> list[Check]:
    """The checks every message passes, in the order they are asked."""
    postmaster = PostmasterAddress(config.server.hostname, config.server.postmaster)
    local = local_checks(config)
    return [
        SenderOwnership(users),
        UserRate(users, rates),
        AddressLiterals(li.name for li in config.listeners if li.allow_address_literals),
        RecipientDomain(),
        *local,
        Relay(
            (
                *config.relay.domains,
                *config.local_domains,
                *srs_domain(config),
                *config.bounce_domains,
            ),
            postmaster,
        ),
        HopLimit(config.server.max_received_headers),
        Postmaster(postmaster),
    ]


def srs_domain(config: Config) -> tuple[str, ...]:
    """Bounces to rewritten senders come to the SRS domain from anyone."""
    if not config.srs.enabled:
        return ()
    return (config.srs.domain or config.server.hostname,)


def local_checks(config: Config) -> list[Check]:
    """What mail Outrider makes itself (DSNs, list copies) passes too: addresses of local
    domains are checked and aliases expanded."""
    wanted = config.local_domains or config.srs.enabled
    return [LocalRecipients(LiveDirectory(config))] if wanted else []


def build_intake(
    config: Config,
    *,
    spool: MessageStore,
    sink: Sink,
    users: UserRecords | None,
    new_queue_id: Callable[[], str] | None = None,
    rates: UserRateLimiter | None = None,
) -> Intake:
    """``rates``: the per-user rate limiter (default: one with state in this process).
    Queue ids come from the spool when it reserves names to store into (one flush per
    message instead of two: :mod:`outrider.spool.names`)."""
    release: Callable[[str], None] = _keep
    if new_queue_id is None:
        if isinstance(spool, DiskSpool):
            new_queue_id, release = spool.new_queue_id, spool.release_queue_id
        else:
            new_queue_id = fresh_queue_id
    return Intake(
        pipeline=IntakePipeline(intake_checks(config, users, rates or UserRateLimiter())),
        spool=spool,
        sink=sink,
        hostname=config.server.hostname,
        vmtas=VmtaTable.from_config(config),
        new_queue_id=new_queue_id,
        release_queue_id=release,
        dkim=dkim_signer(config),
        unsubscribe=unsubscribe_step(config),
        verp=verp_from_config(config),
    )


def _keep(_queue_id: str) -> None:
    """Fresh ids need no giving back."""


def dkim_signer(config: Config, *, resign: bool = False) -> DkimSigner | None:
    """The signing step, or None (no cost at all) without ``[[dkim]]`` entries. The
    notice intake's ``resign``s: a list copy changes the List-* fields its post was
    signed over, so Outrider's own signatures on it are replaced."""
    return signer_from_config(config.dkim, resign=resign)


def unsubscribe_step(config: Config) -> UnsubscribeStep | None:
    """The List-Unsubscribe step, or None without ``[unsubscribe]`` url or mailto; a
    secret file that cannot be made or read is a start-up error naming the key."""
    try:
        return step_from_config(config.unsubscribe)
    except (OSError, ValueError) as exc:
        path = config.unsubscribe.secret_file
        raise RuntimeError(f"[unsubscribe] secret-file {path}: {exc}") from None


def reconfigure_notice_intake(intake: Intake, config: Config) -> None:
    intake.pipeline = IntakePipeline(local_checks(config))
    intake.hostname = config.server.hostname
    intake.vmtas = VmtaTable.from_config(config)
    intake.dkim = dkim_signer(config, resign=True)


def reconfigure_intake(intake: Intake, config: Config, users: UserRecords | None) -> None:
    """Apply a reloaded config; the per-user rate state carries over."""
    previous = intake.pipeline.find(UserRate)
    rates = previous.limiter if previous is not None else UserRateLimiter()
    intake.pipeline = IntakePipeline(intake_checks(config, users, rates))
    intake.hostname = config.server.hostname
    intake.vmtas = VmtaTable.from_config(config)
    intake.dkim = dkim_signer(config)
    try:
        intake.unsubscribe = unsubscribe_step(config)
    except RuntimeError as exc:
        log.error("%s; the previous [unsubscribe] settings stay", exc)
    intake.verp = verp_from_config(config)


def build_notice_intake(config: Config, *, spool: MessageStore, sink: Sink) -> Intake:
    """The intake DSNs and list copies take: the same completion, placement and store,
    no checks (the mail is Outrider's own) but the expansion of local aliases. DSNs
    and list copies are signed like any mail when their From domain has a key."""
    return Intake(
        pipeline=IntakePipeline(local_checks(config)),
        spool=spool,
        sink=sink,
        hostname=config.server.hostname,
        vmtas=VmtaTable.from_config(config),
        dkim=dkim_signer(config, resign=True),
    )
