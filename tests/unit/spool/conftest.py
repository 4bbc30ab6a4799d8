"""Shared helpers for the spool tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from outrider.message.envelope import Envelope, Notify, Recipient, Ret
from outrider.message.ids import new_queue_id
from outrider.spool.disk import DiskSpool


def make_envelope(recipients: int = 1, queue_id: str | None = None) -> Envelope:
    return Envelope(
        queue_id=queue_id or new_queue_id(),
        sender="sender@example.org",
        recipients=[
            Recipient(
                address=f"user{i}@example.net",
                orcpt=f"rfc822;user{i}@example.net",
                notify=Notify.SUCCESS | Notify.FAILURE,
            )
            for i in range(recipients)
        ],
        received_at=time.time(),
        size=0,
        ret=Ret.HDRS,
        envid="ENV-1",
        client_address="127.0.0.1",
        helo="client.example.org",
    )


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[DiskSpool]:
    s = DiskSpool(tmp_path / "spool")
    yield s
    await s.close()
