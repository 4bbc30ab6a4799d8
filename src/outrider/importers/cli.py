"""``outrider import-pmta FILE`` and ``outrider import-postfix DIR`` (``[-o OUT]``).

The TOML goes to standard output (or ``OUT``); everything the operator must act on goes
to standard error: what was left as comments, the ``outrider user add`` commands for
PowerMTA's SMTP users (passwords are never written), and warnings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

__all__ = ["add_import_parsers", "run_import_pmta", "run_import_postfix"]


def add_import_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``import-pmta`` and ``import-postfix`` on the top-level ``outrider`` parser."""
    pmta = subparsers.add_parser(
        "import-pmta", help="translate a PowerMTA config file into Outrider TOML"
    )
    pmta.add_argument("file", help="the PowerMTA config, e.g. /etc/pmta/config")
    pmta.add_argument("-o", "--output", help="write the TOML here instead of standard output")
    postfix = subparsers.add_parser(
        "import-postfix",
        help="translate a Postfix configuration (main.cf, master.cf, tables) into Outrider TOML",
    )
    postfix.add_argument("directory", help="the Postfix configuration directory, e.g. /etc/postfix")
    postfix.add_argument("-o", "--output", help="write the TOML here instead of standard output")


def _write(command: str, toml: str, output: str | None) -> bool:
    """The TOML to ``output`` or standard output; False (reported) if it cannot be written."""
    if not output:
        sys.stdout.write(toml)
        return True
    try:
        Path(output).write_text(toml, encoding="utf-8")
    except OSError as exc:
        print(f"outrider {command}: cannot write {output}: {exc.strerror}", file=sys.stderr)
        return False
    return True


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
    if not _write("import-pmta", result.toml, args.output):
        return 1
    report(result.skipped, result.user_commands, result.warnings, sys.stderr)
    return 0


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
    if not _write("import-postfix", result.toml, args.output):
        return 1
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


def report(
    skipped: Sequence[object], user_commands: list[str], warnings: list[str], out: TextIO
) -> None:
    """The PowerMTA import's summary on standard error."""
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
