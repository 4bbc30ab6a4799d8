"""``outrider token add|list|del``: bearer tokens for the HTTP API.

The file comes from ``[http] tokens-file`` in the config given with ``-c``;
``--tokens-file`` overrides it. ``add`` prints the new token once, on the last line of
its output: only its hash is stored, so it cannot be shown again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from outrider.http.tokens import ROLES, TokenError, add, delete, load

DEFAULT_CONFIG = "/etc/outrider/outrider.toml"


def add_token_parser(subparsers: Any) -> None:
    """Register ``token`` and its subcommands on the top-level ``outrider`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        default=None,
        help=f"configuration file naming [http] tokens-file (default {DEFAULT_CONFIG})",
    )
    common.add_argument("--tokens-file", type=Path, help="tokens file (overrides the config)")
    token = subparsers.add_parser("token", help="manage HTTP API bearer tokens")
    actions = token.add_subparsers(dest="token_command", required=True)
    new = actions.add_parser("add", parents=[common], help="add a token; prints it once")
    new.add_argument("name", help="what the token is for, e.g. grafana")
    new.add_argument(
        "--role",
        required=True,
        choices=ROLES,
        help="admin acts, monitor reads, inject only submits mail (POST /api/v1/messages)",
    )
    actions.add_parser("list", parents=[common], help="list tokens (never the tokens)")
    gone = actions.add_parser("del", parents=[common], help="delete a token")
    gone.add_argument("name")


def run_token_command(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run a parsed ``outrider token ...``; 0 on success, 1 with a message on error."""
    try:
        path = _tokens_file(args)
        if args.token_command == "add":
            token = add(path, args.name, args.role)
            print(f"added token {args.name!r} ({args.role}) to {path}", file=out)
            print("it is shown only now; send it as 'Authorization: Bearer <token>':", file=out)
            print(token, file=out)
        elif args.token_command == "del":
            delete(path, args.name)
            print(f"deleted token {args.name!r}", file=out)
        else:
            entries = load(path)
            width = max((len(e.name) for e in entries), default=4)
            print(f"{'NAME':<{width}}  ROLE     CREATED", file=out)
            for e in entries:
                print(f"{e.name:<{width}}  {e.role:<7}  {e.created}", file=out)
    except TokenError as exc:
        print(f"outrider token: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"outrider token: {exc}", file=sys.stderr)
        return 1
    return 0


def _tokens_file(args: argparse.Namespace) -> Path:
    if args.tokens_file is not None:
        return Path(args.tokens_file)
    from outrider.config.loader import ConfigError, load_config

    config_path = args.config or DEFAULT_CONFIG
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise TokenError("; ".join(str(p) for p in exc.problems)) from None
    except OSError as exc:
        raise TokenError(f"{config_path}: cannot read: {exc.strerror}") from None
    return config.http.tokens_file
