"""The ``outrider`` command line."""

from __future__ import annotations

import argparse
import sys

from outrider import __version__
from outrider.auth.cli import add_user_parser, run_user_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="outrider", description="Outrider mail transfer agent")
    parser.add_argument("--version", action="version", version=f"outrider {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground, logging to stderr")
    run.add_argument("-c", "--config", required=True, help="configuration file (TOML)")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("-c", "--config", required=True, help="configuration file (TOML)")
    add_user_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "user":
        return run_user_command(args)
    from outrider.config.loader import ConfigError, load_config

    if args.command == "check-config":
        try:
            load_config(args.config)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"{args.config}: cannot read: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"{args.config}: OK")
        return 0

    from outrider.runtime.daemon import run_daemon
    from outrider.runtime.logs import setup_logging

    setup_logging(args.log_level)
    try:
        return run_daemon(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:
        print(f"outrider: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
