"""The accounting log's CSV lines are exactly what the csv module writes."""

from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from outrider.accounting.csvline import csv_lines

# Every character the csv writer treats specially, and some it does not.
CELL = st.text(alphabet=st.sampled_from(list("ab ,\"\r\n\x00'é✓;\t")), max_size=6)
ROWS = st.lists(st.lists(CELL, max_size=6), max_size=6)


def csv_module(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerows(rows)
    return out.getvalue()


@settings(max_examples=1000, deadline=None)
@given(ROWS)
def test_lines_match_the_csv_module(rows: list[list[str]]) -> None:
    assert csv_lines(rows) == csv_module(rows)


@given(ROWS)
def test_lines_read_back_as_the_rows(rows: list[list[str]]) -> None:
    assert list(csv.reader(io.StringIO(csv_lines(rows), newline=""))) == rows or any(
        row == []
        for row in rows  # an empty row is an empty line, which readers skip
    )


def test_examples() -> None:
    rows = [
        ["d", "250 ok", "", "5120"],
        ["b", "550 5.1.1 <a@b>, no such user", 'said "no"', "x"],
        ["t", "line one\r\nline two", "mx:a.test,b.test/default"],
        [""],
        ["", ""],
    ]
    assert csv_lines(rows) == (
        "d,250 ok,,5120\r\n"
        'b,"550 5.1.1 <a@b>, no such user","said ""no""",x\r\n'
        't,"line one\r\nline two","mx:a.test,b.test/default"\r\n'
        '""\r\n'
        ",\r\n"
    )
