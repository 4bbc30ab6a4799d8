"""The ``outrider`` command line.

Every command taking ``-c FILE`` reads ``$OUTRIDER_CONFIG`` when it is not given, else
``/etc/outrider/outrider.toml``. ``outrider run`` exits 78 (``EX_CONFIG`` of
sysexits.h) when the configuration is invalid or unreadable, so systemd's
``RestartPreventExitStatus=78`` does not restart a daemon that would only fail again;
other start-up failures exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from outrider import __version__
from outrider.admin.cli import COMMANDS, add_console_parsers, run_console_command
from outrider.admin.client import DEFAULT_CONFIG
from outrider.auth.cli import add_user_parser, run_user_command
from outrider.dkim.cli import add_dkim_parser, run_dkim_command
from outrider.http.token_cli import add_token_parser, run_token_command
from outrider.importers.cli import add_import_parsers, run_import_pmta, run_import_postfix
from outrider.local.cli import add_aliases_parser, run_aliases_command
from outrider.suppression.cli import add_suppression_parser, run_suppression_command

EX_CONFIG = 78
CONFIG_ENV = "OUTRIDER_CONFIG"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="outrider", description="Outrider mail transfer agent")
    parser.add_argument("--version", action="version", version=f"outrider {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    config_help = f"configuration file (TOML; default ${CONFIG_ENV}, else {DEFAULT_CONFIG})"
    run = sub.add_parser(
        "run", help="run the daemon in the foreground, logging to stderr and <log-dir>/outrider.log"
    )
    run.add_argument("-c", "--config", help=config_help)
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    check = sub.add_parser(
        "check-config", help="validate a configuration file (exit 0 if valid, else 1)"
    )
    check.add_argument("-c", "--config", help=config_help)
    sub.add_parser("config-schema", help="print the JSON Schema of the configuration file")
    add_user_parser(sub)
    add_token_parser(sub)
    add_aliases_parser(sub)
    add_suppression_parser(sub)
    add_dkim_parser(sub)
    add_console_parsers(sub)
    add_import_parsers(sub)
    gen = sub.add_parser(
        "gen-cert", help="write a self-signed TLS certificate and key (for testing only)"
    )
    gen.add_argument("--cert", required=True, help="certificate file to write (PEM)")
    gen.add_argument("--key", required=True, help="private key file to write (PEM, mode 0600)")
    gen.add_argument("--hostname", required=True, help="name (or IP) the certificate is for")
    gen.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    gen.add_argument("--force", action="store_true", help="replace existing files")
    _config_default_unset(parser)
    return parser


def _config_default_unset(parser: argparse.ArgumentParser) -> None:
    """Make every sub-command's ``-c`` default None, so :func:`main` resolves it in one
    place (``$OUTRIDER_CONFIG``, then the default path), whichever module declared it."""
    for action in parser._actions:
        if action.dest == "config":
            action.default = None
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _config_default_unset(child)


def default_config() -> tuple[str, str]:
    """The config file to use without ``-c``, and where that choice came from."""
    path = os.environ.get(CONFIG_ENV, "")
    if path:
        return path, f"from ${CONFIG_ENV}"
    return DEFAULT_CONFIG, "the default"


def _resolve_config(args: argparse.Namespace) -> str | None:
    """Fill in ``args.config`` when it was not given; an error message when the file it
    falls back to does not exist. ``outrider user --users-file F`` and ``outrider token
    --tokens-file F`` need no config."""
    if getattr(args, "config", "") is not None:
        return None
    if args.command == "user" and getattr(args, "users_file", None) is not None:
        return None
    if args.command == "token" and getattr(args, "tokens_file", None) is not None:
        return None
    path, origin = default_config()
    args.config = path
    if os.path.exists(path):
        return None
    if args.command == "user":
        return (
            f"outrider user: no configuration file at {path} ({origin}) to name the users "
            f"file: give -c CONFIG or --users-file PATH, or set {CONFIG_ENV}"
        )
    return f"outrider: no configuration file at {path} ({origin}); give -c FILE or set {CONFIG_ENV}"


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
    missing = _resolve_config(args)
    if missing is not None:
        print(missing, file=sys.stderr)
        return EX_CONFIG if args.command == "run" else 1
    if args.command == "gen-cert":
        return _gen_cert(args)
    if args.command == "import-pmta":
        return run_import_pmta(args)
    if args.command == "user":
        return run_user_command(args)
    if args.command == "token":
        return run_token_command(args)
    if args.command == "aliases":
        return run_aliases_command(args)
    if args.command == "suppression":
        return run_suppression_command(args)
    if args.command == "dkim":
        return run_dkim_command(args)
    if args.command == "import-postfix":
        return run_import_postfix(args)
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

    return _run(args.config, args.log_level)


def _run(config_path: str, log_level: str) -> int:
    """``outrider run``: load the config (exit 78 if it is invalid), then log as it says."""
    from outrider.config.loader import ConfigError, load_config
    from outrider.fd_limit import raise_open_files_limit
    from outrider.runtime.daemon import run_daemon
    from outrider.runtime.logs import DELIVERY, settings_for, setup_logging

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return _config_refused([str(problem) for problem in exc.problems])
    except OSError as exc:
        return _config_refused([f"{config_path}: cannot read: {exc.strerror}"])
    settings = settings_for(config.server, DELIVERY)
    try:
        setup_logging(log_level, settings)
    except OSError as exc:
        print(
            f"outrider: cannot open the daemon log {settings.file}: {exc.strerror}", file=sys.stderr
        )
        return 1
    raise_open_files_limit()  # before any receiver process starts: they inherit it
    try:
        return run_daemon(config_path, config)
    except ConfigError as exc:
        return _config_refused([str(problem) for problem in exc.problems])
    except (OSError, RuntimeError) as exc:
        print(f"outrider: {exc}", file=sys.stderr)
        return 1


def _config_refused(problems: list[str]) -> int:
    """Only the problems, one ``FILE:LINE: key: message`` a line, as check-config prints
    them; the exit status says the rest."""
    for problem in problems:
        print(problem, file=sys.stderr)
    return EX_CONFIG


if __name__ == "__main__":
    sys.exit(main())
