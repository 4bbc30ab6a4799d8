"""The directory of local domains and lists, built from the configuration and its files.

Mailbox, alias and member files are re-read when they change (checked at most once a
second, by modification time and size), so adding a mailbox needs no reload. A file
that has become unreadable or wrong keeps the last good directory in force and is
logged once per change: a typo never makes every address unknown.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from outrider.config.model import Config
from outrider.local.aliases_file import AliasError, read_aliases, read_mailboxes, read_members
from outrider.local.directory import Directory, LocalDomain, MailingList
from outrider.local.srs import Srs, load_secret

log = logging.getLogger("outrider.local")

CHECK_EVERY = 1.0  # seconds between looks at the files


def build_srs(config: Config) -> Srs | None:
    """The SRS signer when ``[srs]`` is on (its key file is made at the first start)."""
    settings = config.srs
    if not settings.enabled:
        return None
    domain = settings.domain or config.server.hostname
    return Srs(load_secret(settings.secret_file), domain, int(settings.max_age // 86400))


def build_directory(config: Config, *, srs: bool = True) -> Directory:
    """Raises :class:`AliasError` for a bad file (the loader reports it at load time);
    ``srs=False`` leaves SRS out (``outrider aliases check`` makes no key file)."""
    domains: dict[str, LocalDomain] = {}
    for name, settings in config.local_domains.items():
        mailboxes: set[str] | None = None
        if settings.mailboxes is not None or settings.mailboxes_file is not None:
            mailboxes = set(settings.mailboxes or ())
            if settings.mailboxes_file is not None:
                mailboxes.update(read_mailboxes(settings.mailboxes_file))
        aliases = dict(settings.aliases)
        if settings.aliases_file is not None:
            for alias, targets in read_aliases(settings.aliases_file).items():
                aliases.setdefault(alias, targets)  # the config's own table wins
        domains[name] = LocalDomain(
            name,
            frozenset(mailboxes) if mailboxes is not None else None,
            aliases,
            settings.catch_all or (),
            settings.recipient_delimiter,
        )
    server = config.server
    postmaster = server.postmaster or f"postmaster@{server.hostname}"
    lists: dict[str, MailingList] = {}
    for address, list_settings in config.lists.items():
        members = list(list_settings.members)
        if list_settings.members_file is not None:
            members.extend(read_members(list_settings.members_file))
        allowed = list_settings.allowed_senders
        lists[address] = MailingList(
            address,
            tuple(dict.fromkeys(members)),
            allowed if isinstance(allowed, str) else frozenset(allowed),
            list_settings.bounce_address or "",
            list_settings.description,
            list_settings.owner or (postmaster,),
        )
    return Directory(domains, lists, build_srs(config) if srs else None)


def watched_files(config: Config) -> list[Path]:
    files: list[Path | None] = []
    for settings in config.local_domains.values():
        files += [settings.mailboxes_file, settings.aliases_file]
    files += [mlist.members_file for mlist in config.lists.values()]
    return [f for f in files if f is not None]


def _signature(files: list[Path]) -> tuple[tuple[float, int] | None, ...]:
    out: list[tuple[float, int] | None] = []
    for file in files:
        try:
            st = os.stat(file)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime, st.st_size))
    return tuple(out)


class LiveDirectory:
    """The current :class:`Directory`, rebuilt when one of its files changes."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.files = watched_files(config)
        self.signature = _signature(self.files)
        self.directory = build_directory(config)
        self.checked = clock()

    def current(self) -> Directory:
        if not self.files:
            return self.directory
        now = self.clock()
        if now - self.checked < CHECK_EVERY:
            return self.directory
        self.checked = now
        signature = _signature(self.files)
        if signature != self.signature:
            self.signature = signature
            try:
                self.directory = build_directory(self.config)
            except AliasError as exc:
                log.error(
                    "local domains: %s; the previous mailboxes and aliases stay in force", exc
                )
            else:
                log.info("local domains: mailbox, alias or member files re-read")
        return self.directory
