"""Who receives mail for a local address: the pure look-up behind RCPT and expansion.

For an address of a local domain the order is Postfix's for virtual domains: an alias
of the whole local part, then a mailbox, then the same two for the part before the
recipient delimiter (``alice+news`` reaches ``alice``), then a mailing list at that
address, then the catch-all. A domain without a mailbox list (its LMTP server decides)
takes every local part that no alias or list claims. Anything else is unknown and
refused at RCPT time (550 5.1.1), so no bounce is ever sent for it.

Expansion follows aliases to their end: local mailboxes, remote addresses (forwarding)
and lists, each once, in first-seen order. A cycle (``a -> b -> a``) or a chain deeper
than :data:`MAX_DEPTH` is a loop (5.4.6); a list is expanded later, as its own message.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from outrider.local.srs import Srs, SrsError, is_srs
from outrider.message.domains import InvalidDomainError, normalize_domain

MAX_DEPTH = 20  # alias hops; Postfix's virtual_alias_recursion_limit is 1000, Exim's 20ish


class Kind(enum.Enum):
    MAILBOX = "mailbox"  # deliver into a local mailbox
    ALIAS = "alias"  # stands for other addresses (an alias or the catch-all)
    LIST = "list"  # a mailing list's address
    REMOTE = "remote"  # not ours: relayed (forwarding, when an alias points there)
    UNKNOWN = "unknown"  # a local domain's address that nobody receives


@dataclass(frozen=True, slots=True)
class LocalDomain:
    name: str  # normalised domain
    mailboxes: frozenset[str] | None  # lower-case local parts; None: the LMTP server decides
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name -> targets
    catch_all: tuple[str, ...] = ()
    delimiter: str = ""  # e.g. "+"; "" for none


@dataclass(frozen=True, slots=True)
class MailingList:
    address: str  # normalised full address
    members: tuple[str, ...]
    allowed_senders: str | frozenset[str] = "members"  # "members", "anyone" or addresses/domains
    bounce_address: str = ""  # "": LIST-bounces@DOMAIN
    description: str = ""
    owner: tuple[str, ...] = ()  # who gets mail for LIST-bounces@ and LIST-request@


@dataclass(frozen=True, slots=True)
class Target:
    kind: Kind
    address: str  # local addresses: local part in lower case; domains normalised
    mailbox: str = ""  # MAILBOX: the mailbox name (the local part without its extension)
    domain: str = ""
    targets: tuple[str, ...] = ()  # ALIAS: the full addresses it stands for


@dataclass(slots=True)
class Expansion:
    mailboxes: list[Target] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # alias targets nobody receives
    loop: str = ""  # the address where a cycle or too deep a chain was found


def split_address(address: str) -> tuple[str, str]:
    """(local part, normalised domain); a bad or missing domain gives ``""``."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    try:
        return local, normalize_domain(domain)
    except InvalidDomainError:
        return local, ""


class Directory:
    """Local domains and lists, built from the configuration; immutable once built."""

    def __init__(
        self,
        domains: Mapping[str, LocalDomain],
        lists: Mapping[str, MailingList],
        srs: Srs | None = None,
    ) -> None:
        self.domains = dict(domains)
        self.lists = dict(lists)
        self.srs = srs
        # LIST-bounces@ (or the list's own bounce address) and LIST-request@ reach its owner.
        self.list_admin: dict[str, tuple[str, ...]] = {}
        for mlist in self.lists.values():
            if not mlist.owner:
                continue
            local, domain = split_address(mlist.address)
            bounces = mlist.bounce_address or f"{local}-bounces@{domain}"
            for admin in (bounces, f"{local}-request@{domain}"):
                admin_local, admin_domain = split_address(admin)
                self.list_admin[f"{admin_local.lower()}@{admin_domain}"] = mlist.owner

    def is_local(self, domain: str) -> bool:
        return domain in self.domains

    def lookup(self, address: str, *, aliases: bool = True) -> Target:
        """One step: what ``address`` is, without following aliases (``aliases=False``:
        what it would be without its own alias, for an alias that names itself)."""
        local, domain = split_address(address)
        if self.srs is not None and domain == self.srs.domain and is_srs(local):
            # A bounce to a sender we rewrote: back to the original sender, if genuine.
            full = f"{local}@{domain}"
            try:
                original = self.srs.reverse(full)
            except SrsError:
                return Target(Kind.UNKNOWN, full, domain=domain)
            return Target(Kind.ALIAS, full, domain=domain, targets=(original,))
        where = self.domains.get(domain)
        if where is None:
            return Target(Kind.REMOTE, f"{local}@{domain}" if domain else address, domain=domain)
        key = local.lower()
        full = f"{key}@{where.name}"
        found = _alias_or_mailbox(where, key, full, aliases)
        if found is None and where.delimiter:
            base, sep, _ = key.partition(where.delimiter)
            if sep and base:
                found = _alias_or_mailbox(where, base, full, aliases)
        if found is not None:
            return found
        if full in self.lists:
            return Target(Kind.LIST, full, domain=where.name)
        owner = self.list_admin.get(full)
        if owner is not None and aliases:
            return Target(Kind.ALIAS, full, domain=where.name, targets=owner)
        if where.catch_all and aliases:
            targets = tuple(_qualify(t, where.name) for t in where.catch_all)
            return Target(Kind.ALIAS, full, domain=where.name, targets=targets)
        if where.mailboxes is None:
            return Target(Kind.MAILBOX, full, mailbox=key, domain=where.name)
        return Target(Kind.UNKNOWN, full, domain=where.name)

    def accepts(self, address: str) -> bool:
        """Whether RCPT TO this address is taken (for a domain that is not local, the
        relay rules decide, not this)."""
        return self.lookup(address).kind is not Kind.UNKNOWN

    def expand(self, address: str) -> Expansion:
        """Every final target of ``address``, aliases followed, each once."""
        result = Expansion()
        self._expand(address, (), set(), result)
        return result

    def _expand(self, address: str, path: tuple[str, ...], seen: set[str], out: Expansion) -> None:
        if out.loop:
            return
        found = self.lookup(address)
        key = found.address
        if key in path or len(path) >= MAX_DEPTH:
            out.loop = key
            return
        if found.kind is Kind.ALIAS:
            for target in found.targets:
                if self.lookup(target).address == key:  # "alice: alice, backup@...": a copy
                    self._final(self.lookup(target, aliases=False), seen, out)
                else:
                    self._expand(target, (*path, key), seen, out)
            return
        self._final(found, seen, out)

    @staticmethod
    def _final(found: Target, seen: set[str], out: Expansion) -> None:
        key = found.address
        if key in seen:
            return
        seen.add(key)
        if found.kind is Kind.MAILBOX:
            out.mailboxes.append(found)
        elif found.kind is Kind.LIST:
            out.lists.append(key)
        elif found.kind is Kind.UNKNOWN:
            out.unknown.append(key)
        else:
            out.remote.append(key)

    def check(self) -> list[str]:
        """Problems in the aliases and lists: targets nobody receives, and loops."""
        problems: list[str] = []
        for where in self.domains.values():
            for name in sorted(where.aliases):
                expansion = self.expand(f"{name}@{where.name}")
                if expansion.loop:
                    problems.append(f"alias {name}@{where.name}: loop at {expansion.loop}")
                for unknown in expansion.unknown:
                    problems.append(f"alias {name}@{where.name}: {unknown} is not a mailbox")
        for mlist in self.lists.values():
            for member in mlist.members:
                if self.lookup(member).kind is Kind.UNKNOWN:
                    problems.append(f"list {mlist.address}: member {member} is not a mailbox")
        return problems


def _alias_or_mailbox(where: LocalDomain, key: str, full: str, aliases: bool) -> Target | None:
    targets = where.aliases.get(key) if aliases else None
    if targets is not None:
        qualified = tuple(_qualify(t, where.name) for t in targets)
        return Target(Kind.ALIAS, full, domain=where.name, targets=qualified)
    if where.mailboxes is not None and key in where.mailboxes:
        return Target(Kind.MAILBOX, full, mailbox=key, domain=where.name)
    return None


def _qualify(target: str, domain: str) -> str:
    return target if "@" in target else f"{target}@{domain}"
