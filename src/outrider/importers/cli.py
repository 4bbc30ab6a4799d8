"""``outrider import-pmta FILE [-o OUT]``: PowerMTA config in, Outrider TOML out.

The TOML goes to standard output (or ``OUT``); everything the operator must act on
goes to standard error: the directives left as comments, the ``outrider user add``
commands for the SMTP users (passwords are never written), and warnings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

__all__ = ["add_import_parsers", "run_import_pmta"]


def add_import_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``import-pmta`` on the top-level ``outrider`` parser."""
    pmta = subparsers.add_parser(
        "import-pmta", help="translate a PowerMTA config file into Outrider TOML"
    )
    pmta.add_argument("file", help="the PowerMTA config, e.g. /etc/pmta/config")
    pmta.add_argument("-o", "--output", help="write the TOML here instead of standard output")


def run_import_pmta(args: argparse.Namespace) -> int:
    """0 when the TOML was written (even with untranslated directives), 1 on an error."""
    from outrider.importers.pmta import translate
    from outrider.importers.pmta_parse import PmtaSyntaxError, parse_file

    try:
        nodes = parse_file(args.file)
    except PmtaSyntaxError as exc:
        print(f"outrider import-pmta: {exc}", file=sys.stderr)
        return 1
    result = translate(nodes)
    if args.output:
        try:
            Path(args.output).write_text(result.toml, encoding="utf-8")
        except OSError as exc:
            print(f"outrider import-pmta: cannot write {args.output}: {exc}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(result.toml)
    report(result.skipped, result.user_commands, result.warnings, sys.stderr)
    return 0


def report(
    skipped: Sequence[object], user_commands: list[str], warnings: list[str], out: TextIO
) -> None:
    """The summary on standard error."""
    if skipped:
        print(f"{len(skipped)} PowerMTA directive(s) not translated (kept as comments):", file=out)
        for item in skipped:
            print(f"  {item}", file=out)
    if user_commands:
        print("SMTP users: create them with (passwords are not copied):", file=out)
        for command in user_commands:
            print(f"  {command}", file=out)
        print(
            "  and set auth = true on the [[listener]] they use (it needs tls-cert/tls-key)",
            file=out,
        )
    for warning in warnings:
        print(f"warning: {warning}", file=out)
