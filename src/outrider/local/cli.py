"""``outrider aliases check``: the aliases, mailboxes and lists as the daemon would see them."""

from __future__ import annotations

import argparse
import sys

from outrider.local.aliases_file import AliasError
from outrider.local.build import build_directory


def add_aliases_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    aliases = sub.add_parser("aliases", help="check local domains' aliases and lists")
    verbs = aliases.add_subparsers(dest="aliases_command", required=True)
    check = verbs.add_parser(
        "check", help="report alias targets nobody receives, alias loops and unknown list members"
    )
    check.add_argument("-c", "--config", help="configuration file (TOML)")


def run_aliases_command(args: argparse.Namespace) -> int:
    from outrider.config.loader import ConfigError, load_config

    try:
        config = load_config(args.config)
        directory = build_directory(config, srs=False)
    except ConfigError as exc:
        print("\n".join(str(p) for p in exc.problems), file=sys.stderr)
        return 1
    except AliasError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.config}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    problems = directory.check()
    for line in problems:
        print(line, file=sys.stderr)
    aliases = sum(len(d.aliases) for d in directory.domains.values())
    summary = (
        f"{len(directory.domains)} local domain(s), {aliases} alias(es), "
        f"{len(directory.lists)} list(s)"
    )
    if problems:
        print(f"{summary}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{summary}: OK")
    return 0
