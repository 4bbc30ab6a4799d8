from __future__ import annotations

import pytest

from outrider.auth import passwords


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real scrypt, tiny cost: the production cost would make these tests slow."""
    monkeypatch.setattr(passwords, "DEFAULT_SCRYPT", passwords.ScryptParams(n=16, r=8, p=1))
