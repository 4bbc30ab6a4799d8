"""``outrider import-postfix DIR [-o OUT]``: the command-line face of ``postfix.py``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_import_postfix_parser(sub: Any) -> None:
    """Register ``import-postfix`` on the ``outrider`` sub-command parser."""
    cmd = sub.add_parser(
        "import-postfix",
        help="translate a Postfix configuration (main.cf, master.cf, tables) into Outrider TOML",
    )
    cmd.add_argument("directory", help="the Postfix configuration directory, e.g. /etc/postfix")
    cmd.add_argument("-o", "--output", help="write the TOML here instead of standard output")


def run_import_postfix(args: argparse.Namespace) -> int:
    """Print (or write) the TOML; the summary of what was not translated goes to stderr."""
    from outrider.importers.postfix import import_postfix

    directory = Path(args.directory)
    try:
        result = import_postfix(directory)
    except OSError as exc:
        print(
            f"outrider import-postfix: cannot read {directory}/main.cf: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    if args.output:
        try:
            Path(args.output).write_text(result.toml, encoding="utf-8")
        except OSError as exc:
            print(
                f"outrider import-postfix: cannot write {args.output}: {exc.strerror}",
                file=sys.stderr,
            )
            return 1
    else:
        sys.stdout.write(result.toml)
    if result.unsupported:
        print(f"{len(result.unsupported)} setting(s) not translated:", file=sys.stderr)
        for note in result.unsupported:
            print(f"  {note.line()}", file=sys.stderr)
    if result.quiet:
        print(
            f"{len(result.quiet)} setting(s) not needed by Outrider (paths, housekeeping), "
            "kept as comments",
            file=sys.stderr,
        )
    return 0
