from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.dkim_keys import write_keys


@pytest.fixture(scope="session")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_keys(tmp_path_factory.mktemp("dkim-keys"))
