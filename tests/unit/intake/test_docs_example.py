"""The intake-check example in docs/extending.md runs as written and shows the real list."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from outrider.auth.rates import UserRateLimiter
from outrider.config.loader import parse_config
from outrider.intake.build import intake_checks

DOC = Path(__file__).parents[3] / "docs" / "extending.md"


def _python_blocks() -> list[str]:
    section = DOC.read_text().split("## Adding an intake check", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_example_check_and_its_test_run() -> None:
    check, _, usage = _python_blocks()
    namespace: dict[str, Any] = {}
    exec(check, namespace)
    exec(usage, namespace)  # its asserts are the test


def test_the_registration_shows_the_real_list() -> None:
    registration = _python_blocks()[1]
    config = parse_config('[server]\nhostname = "mx.test"\n[[listener]]\naddress = "127.0.0.1:0"\n')
    real = [type(check).__name__ for check in intake_checks(config, None, UserRateLimiter())]
    shown = re.findall(r"^\s+(\w+)\(", registration, re.MULTILINE)
    assert shown == [*real, "ClosedDomains"]
