"""docs/accounting.md matches the code: every column documented, the example in the
default column order."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from outrider.accounting.records import DEFAULT_FIELDS, FIELDS

DOC = Path(__file__).resolve().parents[3] / "docs" / "accounting.md"


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_every_column_is_documented_once() -> None:
    columns = section(DOC.read_text(), "Columns")
    documented = re.findall(r"^\| `(\w+)` \|", columns, re.MULTILINE)
    assert sorted(documented) == sorted(FIELDS)
    assert documented == list(DEFAULT_FIELDS)  # in the order of the file


def test_example_rows_have_the_default_columns() -> None:
    example = section(DOC.read_text(), "Example")
    block = example.split("```\n", 2)[1]
    rows = list(csv.reader(io.StringIO(block)))
    assert rows[0] == list(DEFAULT_FIELDS)
    assert len(rows) > 5 and all(len(row) == len(DEFAULT_FIELDS) for row in rows)
    assert {row[0] for row in rows[1:]} == {"r", "d", "b", "t", "q"}
