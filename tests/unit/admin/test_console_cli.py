"""The console's pure parts: command lines to requests, replies to tables."""

from __future__ import annotations

import argparse

import pytest

from outrider.admin import tables
from outrider.admin.cli import add_console_parsers, build_request


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="outrider")
    add_console_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "request_"),
    [
        (("show", "status"), {"cmd": "overview"}),
        (
            ("show", "queues", "--domain", "example.net", "--sort", "age", "--max", "5"),
            {
                "cmd": "queues",
                "domain": "example.net",
                "vmta": "",
                "mode": "",
                "sort": "age",
                "max": 5,
            },
        ),
        (("show", "message", "ABC", "--body"), {"cmd": "message", "id": "ABC", "body": True}),
        (("retry", "--all"), {"cmd": "retry", "all": True}),
        (("retry", "--message", "ABC"), {"cmd": "retry", "id": "ABC"}),
        (
            ("delete", "--job", "spring", "--bounce"),
            {"cmd": "delete", "bounce": True, "job": "spring"},
        ),
        (("hold", "--queue", "example.net"), {"cmd": "hold", "queue": "example.net"}),
        (("pause", "job", "spring"), {"cmd": "pause-job", "job": "spring"}),
        (("resume", "queue", "example.net"), {"cmd": "resume", "queue": "example.net"}),
        (
            ("set", "queue", "example.net", "--mode", "backoff"),
            {"cmd": "backoff", "queue": "example.net"},
        ),
        (("disable", "source", "192.0.2.1"), {"cmd": "disable-source", "ip": "192.0.2.1"}),
    ],
)
def test_command_lines_become_requests(argv: tuple[str, ...], request_: dict[str, object]) -> None:
    assert build_request(parse(*argv)) == request_


def test_a_selection_is_required_and_exclusive() -> None:
    with pytest.raises(SystemExit):
        parse("delete")
    with pytest.raises(SystemExit):
        parse("retry", "--all", "--queue", "x")


def test_tables_align_and_show_missing_values() -> None:
    text = tables.table(
        [{"name": "a", "n": 1, "x": None}, {"name": "long-name", "n": 100, "x": True}],
        (("name", "NAME"), ("n", "N"), ("x", "X")),
    )
    assert text.splitlines() == [
        "NAME         N  X",
        "a            1  -",
        "long-name  100  yes",
    ]
    assert tables.table([], (("a", "A"),), empty="nothing") == "nothing"
    assert (tables.size(1536), tables.duration(3725)) == ("1.5 KiB", "1h2m")
