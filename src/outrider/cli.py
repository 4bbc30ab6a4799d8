"""The ``outrider`` command line."""

from __future__ import annotations

import argparse
import sys

from outrider import __version__
from outrider.admin.cli import COMMANDS, add_console_parsers, run_console_command
from outrider.auth.cli import add_user_parser, run_user_command
from outrider.http.token_cli import add_token_parser, run_token_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="outrider", description="Outrider mail transfer agent")
    parser.add_argument("--version", action="version", version=f"outrider {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground, logging to stderr")
    run.add_argument("-c", "--config", required=True, help="configuration file (TOML)")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("-c", "--config", required=True, help="configuration file (TOML)")
    sub.add_parser("config-schema", help="print the JSON Schema of the configuration file")
    add_user_parser(sub)
    add_token_parser(sub)
    add_console_parsers(sub)
    gen = sub.add_parser(
        "gen-cert", help="write a self-signed TLS certificate and key (for testing only)"
    )
    gen.add_argument("--cert", required=True, help="certificate file to write (PEM)")
    gen.add_argument("--key", required=True, help="private key file to write (PEM, mode 0600)")
    gen.add_argument("--hostname", required=True, help="name (or IP) the certificate is for")
    gen.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    gen.add_argument("--force", action="store_true", help="replace existing files")
    return parser


def _gen_cert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from outrider.inbound.tls import generate_self_signed

    cert, key = Path(args.cert), Path(args.key)
    try:
        made = generate_self_signed(cert, key, args.hostname, days=args.days, overwrite=args.force)
    except (OSError, ValueError) as exc:
        print(f"outrider: cannot write the certificate: {exc}", file=sys.stderr)
        return 1
    if made:
        print(
            f"outrider: generated a self-signed certificate for {args.hostname}: {cert} "
            f"(key {key}); clients will not trust it, use a real certificate in production",
            file=sys.stderr,
        )
    else:
        print(f"outrider: using the existing certificate {cert} (key {key})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "gen-cert":
        return _gen_cert(args)
    if args.command == "user":
        return run_user_command(args)
    if args.command == "token":
        return run_token_command(args)
    if args.command in COMMANDS:
        return run_console_command(args)
    if args.command == "config-schema":
        import json

        from outrider.config.docs import json_schema

        print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
        return 0
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

    from outrider.fd_limit import raise_open_files_limit
    from outrider.runtime.daemon import run_daemon
    from outrider.runtime.logs import setup_logging

    setup_logging(args.log_level)
    raise_open_files_limit()  # before any receiver process starts: they inherit it
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
