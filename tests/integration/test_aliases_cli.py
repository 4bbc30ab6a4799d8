"""``outrider aliases check``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFIG = """
[[listener]]
address = "127.0.0.1:2525"
[local-domain."corp.test"]
mailboxes = ["alice"]
aliases-file = "aliases"
[list."team@corp.test"]
members = ["alice@corp.test", "ghost@corp.test"]
"""


def aliases_check(workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outrider", "aliases", "check", "-c", "outrider.toml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_aliases_check_reports_loops_and_unknown_targets(tmp_path: Path) -> None:
    (tmp_path / "outrider.toml").write_text(CONFIG)
    (tmp_path / "aliases").write_text("sales: alice, nobody\na: b\nb: a\n")
    result = aliases_check(tmp_path)
    assert result.returncode == 1
    assert "alias sales@corp.test: nobody@corp.test is not a mailbox" in result.stderr
    assert "alias a@corp.test: loop at a@corp.test" in result.stderr
    assert "list team@corp.test: member ghost@corp.test is not a mailbox" in result.stderr
    assert "1 local domain(s), 3 alias(es), 1 list(s): 4 problem(s)" in result.stderr


def test_aliases_check_passes_a_clean_setup_and_names_bad_files(tmp_path: Path) -> None:
    (tmp_path / "outrider.toml").write_text(CONFIG.replace(', "ghost@corp.test"', ""))
    (tmp_path / "aliases").write_text("sales: alice\n")
    result = aliases_check(tmp_path)
    assert (result.returncode, result.stdout.strip()) == (
        0,
        "1 local domain(s), 1 alias(es), 1 list(s): OK",
    )
    (tmp_path / "aliases").write_text("sales: |/bin/sh\n")
    result = aliases_check(tmp_path)
    assert result.returncode == 1
    assert "aliases:1:" in result.stderr and "commands" in result.stderr
