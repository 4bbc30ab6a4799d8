"""The console commands of the ``outrider`` command line.

Each command becomes one control-socket request (:func:`build_request`, pure), and
the reply is printed as a table or, with ``--json``, as the JSON shape documented in
docs/operations.md. A reply that is not ok goes to stderr and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from outrider.admin import tables
from outrider.admin.acct_find import add_parser as add_acct_parser
from outrider.admin.acct_find import run_acct
from outrider.admin.client import DEFAULT_CONFIG, ConsoleError, request, socket_path
from outrider.admin.tail import run_tail

COMMANDS = (
    "show",
    "list",
    "retry",
    "delete",
    "hold",
    "release",
    "pause",
    "resume",
    "set",
    "disable",
    "enable",
    "reload",
    "tail",
    "route",
    "acct",
)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG,
        help=f"configuration file (default {DEFAULT_CONFIG})",
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return common


def _selection(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    helps = {
        "queue": "a queue (destination/vmta), destination or recipient domain",
        "message": "a queue id",
        "rcpt": "a recipient address",
        "job": "a job (X-Job)",
        "all": "everything queued",
    }
    for name in names:
        if name == "all":
            group.add_argument("--all", action="store_true", help=helps[name])
        else:
            group.add_argument(f"--{name}", metavar=name.upper(), help=helps[name])


def add_console_parsers(sub: Any) -> None:
    """Add the console commands to the ``outrider`` sub-command parser."""
    common = _common()
    show = sub.add_parser("show", help="show the daemon's state and its queues")
    what = show.add_subparsers(dest="what", required=True)
    what.add_parser("status", parents=[common], help="version, uptime, traffic, spool")
    queues = what.add_parser("queues", parents=[common], help="the delivery queues")
    queues.add_argument("--domain", default="", help="only queues holding this domain's mail")
    queues.add_argument("--vmta", default="", help="only this virtual MTA's queues")
    queues.add_argument("--mode", choices=["normal", "backoff", "paused"], help="only this mode")
    queues.add_argument("--sort", default="recipients", choices=["recipients", "age", "size"])
    queues.add_argument("--max", type=int, default=0, help="at most this many queues")
    top = what.add_parser("topdomains", parents=[common], help="recipient domains by queued mail")
    top.add_argument("--max", type=int, default=20, help="at most this many domains (default 20)")
    what.add_parser("vmtas", parents=[common], help="virtual MTAs and their queues")
    what.add_parser("jobs", parents=[common], help="jobs with queued mail, and paused jobs")
    what.add_parser("cluster", parents=[common], help="[cluster]: live nodes, shared limits in use")
    conf = what.add_parser("config", parents=[common], help="the running configuration")
    conf.add_argument("--effective", action="store_true", help="every key, defaults included")
    msg = what.add_parser("message", parents=[common], help="one queued message")
    msg.add_argument("id", help="the queue id (from '250 queued as ...')")
    msg.add_argument("--body", action="store_true", help="the whole message, not just headers")

    lst = sub.add_parser("list", parents=[common], help="queued recipients")
    for name in ("queue", "rcpt", "job", "sender"):
        lst.add_argument(f"--{name}", default="", metavar=name.upper())
    lst.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")

    retry = sub.add_parser("retry", parents=[common], help="attempt deferred mail now")
    _selection(retry, ("queue", "message", "rcpt", "all"))
    delete = sub.add_parser("delete", parents=[common], help="remove queued recipients")
    _selection(delete, ("queue", "message", "rcpt", "job"))
    delete.add_argument("--bounce", action="store_true", help="send the sender a failure DSN")
    for verb, text in (
        ("hold", "hold messages until released"),
        ("release", "release held messages"),
    ):
        parser = sub.add_parser(verb, parents=[common], help=text)
        _selection(parser, ("queue", "message"))
    for verb in ("pause", "resume"):
        parser = sub.add_parser(verb, parents=[common], help=f"{verb} a queue or a job")
        parser.add_argument("kind", choices=["queue", "job"])
        parser.add_argument("name", help="queue, destination or domain; or the job")
    for verb in ("disable", "enable"):
        parser = sub.add_parser(verb, parents=[common], help=f"{verb} a source IP address")
        parser.add_argument("kind", choices=["source"])
        parser.add_argument("ip", help="a virtual MTA's smtp-source-host address")
    sub.add_parser(
        "reload", parents=[common], help="reload the config file; says whether it was accepted"
    )
    route = sub.add_parser("route", parents=[common], help="where mail for an address would go")
    route.add_argument("address", help="a recipient address")
    route.add_argument("--vmta", default="", help="as sent by this virtual MTA or pool")
    tail = sub.add_parser("tail", parents=[common], help="follow the accounting log")
    tail.add_argument("--type", default="", help="record types, e.g. d,b,t (default all)")
    tail.add_argument("--rcpt", default="", help="only this recipient")
    tail.add_argument("--job", default="", help="only this job")
    tail.add_argument("-n", "--lines", type=int, default=10, help="rows shown first (10)")
    add_acct_parser(sub, common)
    set_ = sub.add_parser("set", parents=[common], help="set a queue's mode")
    set_.add_argument("kind", choices=["queue"])
    set_.add_argument("name", help="queue, destination or domain")
    set_.add_argument("--mode", required=True, choices=["normal", "backoff"])


def _selected(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, key in (("queue", "queue"), ("message", "id"), ("rcpt", "rcpt"), ("job", "job")):
        value = getattr(args, name, None)
        if value:
            found[key] = value
    if getattr(args, "all", False):
        found["all"] = True
    return found


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    """The control-socket request of a parsed console command."""
    command = args.command
    if command == "show":
        what = args.what
        if what == "status":
            return {"cmd": "overview"}
        if what == "queues":
            return {
                "cmd": "queues",
                "domain": args.domain,
                "vmta": args.vmta,
                "mode": args.mode or "",
                "sort": args.sort,
                "max": max(0, args.max),
            }
        if what == "topdomains":
            return {"cmd": "topdomains", "max": max(0, args.max)}
        if what == "message":
            return {"cmd": "message", "id": args.id, "body": args.body}
        if what == "config":
            return {"cmd": "config", "effective": args.effective}
        return {"cmd": what}
    if command == "list":
        return {
            "cmd": "list",
            "queue": args.queue,
            "rcpt": args.rcpt,
            "job": args.job,
            "sender": args.sender,
            "limit": max(0, args.limit),
        }
    if command == "delete":
        return {"cmd": "delete", "bounce": args.bounce, **_selected(args)}
    if command in ("retry", "hold", "release"):
        return {"cmd": command, **_selected(args)}
    if command in ("pause", "resume"):
        if args.kind == "job":
            return {"cmd": f"{command}-job", "job": args.name}
        return {"cmd": command, "queue": args.name}
    if command == "reload":
        return {"cmd": "reload"}
    if command == "route":
        return {"cmd": "route", "address": args.address, "vmta": args.vmta}
    if command in ("disable", "enable"):
        return {"cmd": f"{command}-source", "ip": args.ip}
    return {"cmd": args.mode, "queue": args.name}  # set queue NAME --mode


def _json_of(args: argparse.Namespace, reply: dict[str, Any]) -> Any:
    """The part of the reply ``--json`` prints: the list or object the command is about."""
    keys = ("queues", "domains", "vmtas", "jobs", "recipients", "message", "status", "route")
    if args.command == "show" and args.what == "config":
        return {"source": reply["source"], "config": reply["config"]}
    if args.command == "show" and args.what == "cluster":
        return reply["cluster"]
    for key in keys:
        if key in reply and not (args.command == "set" and key == "queues"):
            return reply[key]
    return {k: v for k, v in reply.items() if k != "ok"}


def _human(args: argparse.Namespace, reply: dict[str, Any]) -> str:
    views: dict[str, Callable[[dict[str, Any]], str]] = {
        "status": lambda r: tables.status(r["status"]),
        "queues": lambda r: tables.queues(r["queues"]),
        "topdomains": lambda r: tables.topdomains(r["domains"]),
        "vmtas": lambda r: tables.vmtas(r["vmtas"]),
        "jobs": lambda r: tables.jobs(r["jobs"]),
        "message": lambda r: tables.message(r["message"]),
        "config": lambda r: tables.config(r["config"], r["source"]),
        "cluster": lambda r: tables.cluster(r["cluster"]),
    }
    if args.command == "show":
        return views[args.what](reply)
    if args.command == "list":
        return tables.recipients(reply["recipients"], reply["total"])
    if args.command == "delete":
        busy = f" ({reply['busy']} being delivered right now, left alone)" if reply["busy"] else ""
        return f"deleted {reply['deleted']} recipient(s){busy}"
    if args.command == "retry":
        return f"{reply['retried']} deferred recipient(s) of {reply['matched']} due now"
    if args.command == "hold":
        return f"held {reply['held']} message(s)"
    if args.command == "release":
        return f"released {reply['released']} message(s)"
    if args.command == "disable":
        return f"source {args.ip} disabled (virtual MTAs: {', '.join(reply['vmtas'])})"
    if args.command == "route":
        return tables.route(reply["route"])
    if args.command == "reload":
        notes = "".join(f"\nwarning: {w}" for w in reply.get("warnings", []))
        return f"configuration reloaded from {reply['config']}{notes}"
    if args.command == "set":
        return f"{reply['queues']} queue(s) set to {args.mode}"
    return "ok"


def run_console_command(args: argparse.Namespace) -> int:
    if args.command == "tail":
        return run_tail(args)
    if args.command == "acct":
        return run_acct(args)
    try:
        reply = request(socket_path(args.config), build_request(args))
    except ConsoleError as exc:
        print(f"outrider: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"outrider: {reply.get('error', 'the daemon refused the command')}", file=sys.stderr)
        return 1
    if reply.get("note"):
        print(f"outrider: {reply['note']}", file=sys.stderr)
    if args.json:
        print(json.dumps(_json_of(args, reply), indent=2, ensure_ascii=False))
    else:
        print(_human(args, reply))
    return 0
