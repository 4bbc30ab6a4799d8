"""Print the inputs each fuzz target ran (counted by harness.py) at the end of the session."""

from __future__ import annotations

import pytest

from tests.fuzz import harness


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not harness.RUNS:
        return
    counts = {name: [harness.RUNS[name], harness.REJECTED[name]] for name in harness.RUNS}
    terminalreporter.section(f"fuzz inputs (profile {harness.profile_name()})")
    for line in harness.count_table(counts):
        terminalreporter.write_line(line)
