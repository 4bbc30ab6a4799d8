"""``outrider user add|del|passwd|list``: manage the built-in SMTP AUTH users file.

The file comes from ``[auth] users-file`` in the config given with ``-c``;
``--users-file`` overrides it (and works without a config). Passwords are read
from the terminal (twice) or, with ``--password-stdin``, as one line from
standard input -- never from the command line, where ``ps`` would show them.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from outrider.auth.store import UserStore

__all__ = ["add_user_parser", "run_user_command"]


class _CliError(Exception):
    pass


def add_user_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``user`` and its subcommands on the top-level ``outrider`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", help="configuration file (TOML) naming [auth] users-file")
    common.add_argument("--users-file", type=Path, help="users file (overrides the config)")
    password = argparse.ArgumentParser(add_help=False)
    password.add_argument(
        "--password-stdin", action="store_true", help="read the password as one line from stdin"
    )
    password.add_argument(
        "--scheme",
        choices=["scrypt", "argon2id"],
        help="password hash (default: [auth] password-hash, else scrypt)",
    )

    user = subparsers.add_parser("user", help="manage SMTP AUTH users")
    actions = user.add_subparsers(dest="user_command", required=True)
    add = actions.add_parser("add", parents=[common, password], help="add a user")
    add.add_argument("name")
    add.add_argument(
        "--allowed-sender",
        action="append",
        default=[],
        metavar="SENDER",
        help="address a@b.c, domain b.c or @b.c, or <> (repeatable; default: any sender)",
    )
    add.add_argument("--max-msg-rate", metavar="RATE", help="e.g. 100/h (default: unlimited)")
    delete = actions.add_parser("del", parents=[common], help="delete a user")
    delete.add_argument("name")
    passwd = actions.add_parser("passwd", parents=[common, password], help="change a password")
    passwd.add_argument("name")
    actions.add_parser("list", parents=[common], help="list users (never shows hashes)")


def run_user_command(args: argparse.Namespace) -> int:
    """Run a parsed ``outrider user ...`` command; 0 on success, 1 with a message on error."""
    from outrider.auth.passwords import PasswordError
    from outrider.auth.store import UserStoreError

    try:
        return _run(args, sys.stdin, sys.stdout)
    except (_CliError, UserStoreError, PasswordError) as exc:
        print(f"outrider user: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("outrider user: interrupted", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    from outrider.auth.store import UserStore, validate_username

    users_file, default_scheme = _resolve(args)
    store = UserStore(users_file)
    command: str = args.user_command
    if command == "list":
        _print_users(store, stdout)
        return 0
    name: str = args.name
    if command == "del":
        store.delete(name)
        print(f"deleted user {name}", file=stdout)
        return 0
    validate_username(name)
    if command == "passwd" and store.get(name) is None:
        raise _CliError(f"no such user {name!r}")  # before asking for a password
    if command == "add" and store.get(name) is not None:
        raise _CliError(f"user {name!r} already exists")
    secret = _read_password(args.password_stdin, stdin)
    scheme: str = args.scheme or default_scheme
    if command == "add":
        store.add(
            name,
            secret,
            allowed_senders=args.allowed_sender,
            max_msg_rate=args.max_msg_rate,
            scheme=scheme,
        )
        print(f"added user {name}", file=stdout)
    else:
        store.set_password(name, secret, scheme=scheme)
        print(f"changed password for user {name}", file=stdout)
    return 0


def _resolve(args: argparse.Namespace) -> tuple[Path, str]:
    """The users file and default hash scheme, from ``--users-file`` and/or the config."""
    scheme = "scrypt"
    users_file: Path | None = args.users_file
    if args.config is not None:
        from outrider.config.loader import ConfigError, load_config

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            raise _CliError("; ".join(str(problem) for problem in exc.problems)) from None
        scheme = config.auth.password_hash
        if users_file is None:
            users_file = config.auth.users_file
    if users_file is None:
        raise _CliError("no users file: give -c CONFIG or --users-file PATH")
    return users_file, scheme


def _read_password(from_stdin: bool, stdin: TextIO) -> str:
    if from_stdin:
        line = stdin.readline()
        secret = line[:-1] if line.endswith("\n") else line
        secret = secret.removesuffix("\r")
        if not secret:
            raise _CliError("no password on standard input")
        return secret
    try:
        first = getpass.getpass("Password: ")
        if not first:
            raise _CliError("empty password")
        second = getpass.getpass("Repeat password: ")
    except EOFError:
        raise _CliError("no password given") from None
    if first != second:
        raise _CliError("passwords do not match")
    return first


def _print_users(store: UserStore, stdout: TextIO) -> None:
    records = store.list()
    if not records:
        print("no users", file=stdout)
        return
    rows = [
        (
            record.username,
            ", ".join(record.allowed_senders) or "(any)",
            record.max_msg_rate or "unlimited",
        )
        for record in records
    ]
    name_width = max(len("USER"), *(len(row[0]) for row in rows))
    sender_width = max(len("ALLOWED SENDERS"), *(len(row[1]) for row in rows))
    print(f"{'USER':<{name_width}}  {'ALLOWED SENDERS':<{sender_width}}  RATE", file=stdout)
    for name, senders, rate in rows:
        print(f"{name:<{name_width}}  {senders:<{sender_width}}  {rate}", file=stdout)
