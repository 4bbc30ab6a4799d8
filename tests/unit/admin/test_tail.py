"""``outrider tail``: complete rows only, filters, and the move to the next day's file."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from outrider.accounting.records import DEFAULT_FIELDS as FIELDS
from outrider.admin.tail import RowFilter, follow, parse_row, tail_line


def line(kind: str, rcpt: str, job: str = "", diag: str = "250 ok") -> bytes:
    row = dict.fromkeys(FIELDS, "")
    row.update(type=kind, rcpt=rcpt, jobId=job, dsnDiag=diag, timeLogged="2026-12-02 10:00:00+0000")
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([row[f] for f in FIELDS])
    return out.getvalue().encode()


HEADER = (",".join(FIELDS) + "\r\n").encode()


def take(rows: Iterator[dict[str, str]], n: int) -> list[dict[str, str]]:
    return [next(rows) for _ in range(n)]


def test_rows_with_commas_parse_and_the_header_does_not() -> None:
    row = parse_row(line("b", "a@x.test", diag="550 5.1.1 no, really").decode().strip())
    assert row is not None and row["dsnDiag"] == "550 5.1.1 no, really"
    assert parse_row(HEADER.decode().strip()) is None
    assert parse_row("not,a,row") is None
    assert tail_line(row).startswith("2026-12-02 10:00:00+0000 b a@x.test")


def test_backlog_then_new_rows_then_the_next_day(tmp_path: Path) -> None:
    today = tmp_path / "acct-2026-12-02.csv"
    today.write_bytes(
        HEADER + line("d", "old1@x.test") + line("t", "t@x.test") + line("d", "old2@x.test")
    )
    rows = follow(tmp_path, RowFilter(types=frozenset({"d"})), lines=1, poll=0.01)
    assert [r["rcpt"] for r in take(rows, 1)] == ["old2@x.test"]
    with open(today, "ab") as fh:
        half = line("d", "new@x.test")
        fh.write(half[:10])  # an unfinished row is not shown
        fh.flush()
        fh.write(half[10:])
    assert [r["rcpt"] for r in take(rows, 1)] == ["new@x.test"]
    with open(today, "ab") as fh:
        fh.write(line("d", "last-of-day@x.test"))
    (tmp_path / "acct-2026-12-03.csv").write_bytes(HEADER + line("d", "tomorrow@x.test"))
    assert [r["rcpt"] for r in take(rows, 2)] == ["last-of-day@x.test", "tomorrow@x.test"]


def test_filters_by_recipient_and_job(tmp_path: Path) -> None:
    (tmp_path / "acct-2026-12-02.csv").write_bytes(
        HEADER
        + line("d", "A@x.test", "spring")
        + line("d", "b@x.test", "spring")
        + line("d", "a@x.test")
    )
    want = RowFilter(rcpt="a@x.test", job="spring")
    stop = iter([False, True])
    rows = list(follow(tmp_path, want, lines=10, stop=lambda: next(stop), poll=0.01))
    assert [(r["rcpt"], r["jobId"]) for r in rows] == [("A@x.test", "spring")]
