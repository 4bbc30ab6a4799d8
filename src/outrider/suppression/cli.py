"""``outrider suppression list|add|remove|import|export``: straight to the list's file.

The commands open the SQLite file named by ``[suppression] file`` themselves, so they
work with the daemon stopped; a running daemon sees each change on its next look-up.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from outrider.suppression.store import (
    GLOBAL,
    REASONS,
    SuppressionError,
    SuppressionStore,
)


def add_suppression_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top = sub.add_parser("suppression", help="the suppression list (addresses never attempted)")
    verbs = top.add_subparsers(dest="suppression_command", required=True)

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help_text)
        p.add_argument("-c", "--config", help="configuration file (TOML)")
        return p

    def scope_args(p: argparse.ArgumentParser, what: str, default: str) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--scope", help=f"{what} this sender domain's list ({default})")
        group.add_argument(
            "--global", dest="global_", action="store_true", help=f"{what} the global list"
        )

    listing = verb("list", "print entries (address, scope, reason, added, source)")
    listing.add_argument("--scope", help="only this sender domain ('*' for the global list)")
    listing.add_argument("--limit", type=int, default=0, help="at most this many (0: all)")
    add = verb("add", "suppress an address")
    add.add_argument("address")
    scope_args(add, "add to", "default: the global list")
    add.add_argument("--reason", default="manual", choices=REASONS)
    remove = verb("remove", "stop suppressing an address")
    remove.add_argument("address")
    scope_args(remove, "remove from", "default: every list")
    imp = verb("import", "add addresses from a CSV file: address[,scope,reason]")
    imp.add_argument("file", help="CSV file ('-' for standard input)")
    scope_args(imp, "lines without a scope go to", "default: the global list")
    imp.add_argument("--reason", default="import", choices=REASONS)
    exp = verb("export", "print the list as CSV")
    exp.add_argument("--scope", help="only this sender domain ('*' for the global list)")


def _scope(args: argparse.Namespace) -> str | None:
    if getattr(args, "global_", False):
        return GLOBAL
    scope: str | None = args.scope
    return scope


def _list_name(scope: str | None) -> str:
    if scope is None:
        return "any list"
    return "the global list" if scope == GLOBAL else f"the {scope} list"


def run_suppression_command(args: argparse.Namespace) -> int:
    from outrider.config.loader import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print("\n".join(str(p) for p in exc.problems), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.config}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    path = config.suppression.file
    try:
        # With [cluster], the daemon publishes this command's changes to the other nodes.
        store = SuppressionStore(path, journal=config.cluster.redis is not None)
    except (OSError, sqlite3.Error) as exc:
        print(f"outrider suppression: cannot open {path}: {exc}", file=sys.stderr)
        return 1
    try:
        return _run(store, args)
    except SuppressionError as exc:
        print(f"outrider suppression: {exc}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error) as exc:
        print(f"outrider suppression: {path}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _run(store: SuppressionStore, args: argparse.Namespace) -> int:
    verb = args.suppression_command
    if verb == "list":
        for entry in store.iter(args.scope, limit=max(0, args.limit)):
            row = entry.as_json()
            print(
                f"{row['address']}\t{row['scope']}\t{row['reason']}\t{row['added']}\t{row['source']}"
            )
        return 0
    if verb == "add":
        entry = store.add(args.address, _scope(args), args.reason, "cli")
        print(f"suppressed {entry.address} ({entry.scope}, {entry.reason})")
        return 0
    if verb == "remove":
        scope = _scope(args)
        removed = store.remove(args.address, scope)
        if removed:
            print(f"removed {args.address} from {removed} list(s)")
            return 0
        print(
            f"outrider suppression: {args.address} is not on {_list_name(scope)}",
            file=sys.stderr,
        )
        return 1
    if verb == "import":
        if args.file == "-":
            result = store.import_csv(sys.stdin, _scope(args), args.reason, "import")
        else:
            with Path(args.file).open(encoding="utf-8", newline="") as f:
                result = store.import_csv(f, _scope(args), args.reason, "import")
        for error in result.errors:
            print(f"{args.file}: {error}", file=sys.stderr)
        print(f"imported {result.added} address(es), {len(result.errors)} bad line(s)")
        return 1 if result.errors else 0
    if verb == "export":
        store.export_csv(sys.stdout, args.scope)
        return 0
    raise AssertionError(verb)
