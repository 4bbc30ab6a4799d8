"""``outrider dkim keygen``: write a private key and print its DNS TXT record."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from outrider.dkim.keys import ALGORITHMS, RSA_SHA256, generate_key, txt_record, write_private_key


def add_dkim_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dkim = sub.add_parser("dkim", help="DKIM signing keys")
    verbs = dkim.add_subparsers(dest="dkim_command", required=True)
    keygen = verbs.add_parser(
        "keygen", help="write a private key (mode 0600) and print the DNS TXT record to publish"
    )
    keygen.add_argument("--domain", required=True, help="the signing domain (d=)")
    keygen.add_argument("--selector", required=True, help="the selector (s=)")
    keygen.add_argument("--algorithm", choices=ALGORITHMS, default=RSA_SHA256)
    keygen.add_argument("--key-file", required=True, help="private key file to write (PEM)")
    keygen.add_argument("--bits", type=int, default=2048, help="RSA key size (default 2048)")
    keygen.add_argument("--force", action="store_true", help="replace an existing key file")


def run_dkim_command(args: argparse.Namespace) -> int:
    if args.bits < 1024 or args.bits > 8192:
        print("outrider dkim keygen: --bits must be between 1024 and 8192", file=sys.stderr)
        return 1
    domain = args.domain.strip().rstrip(".").lower()
    key = generate_key(args.algorithm, args.bits)
    try:
        write_private_key(Path(args.key_file), key, overwrite=args.force)
    except FileExistsError:
        print(
            f"outrider dkim keygen: {args.key_file} exists; give --force to replace it",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"outrider dkim keygen: cannot write {args.key_file}: {exc}", file=sys.stderr)
        return 1
    print(txt_record(domain, args.selector, key))
    return 0
