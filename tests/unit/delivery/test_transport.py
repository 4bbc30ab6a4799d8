"""A wrapping connection (SRS, list posts) hands the rest of the contract to the one it wraps."""

from __future__ import annotations

from typing import Any

import pytest

from outrider.delivery.local_transport import LocalConnection
from outrider.delivery.srs_transport import SrsConnection
from outrider.delivery.transport import ConnectionWrapper, DeliveryReport
from outrider.local.srs import Srs
from outrider.message.envelope import Envelope, Recipient
from outrider.spool.reader import Body


class Inner:
    def __init__(self) -> None:
        self.usable = True
        self.asked: list[str] = []
        self.closed = False

    async def deliver(
        self, envelope: Envelope, recipients: list[Recipient], body: Body
    ) -> DeliveryReport:
        return DeliveryReport()

    async def can_carry(self, domain: str) -> bool:
        self.asked.append(domain)
        return domain == "carried.example"

    async def close(self) -> None:
        self.closed = True


def srs(inner: Inner) -> ConnectionWrapper:
    return SrsConnection(inner, Srs(b"k" * 32, "srs.example.net"))


def local(inner: Inner) -> ConnectionWrapper:
    lists: Any = None  # never asked: no recipient here is a list
    return LocalConnection(inner, lists, lambda _address: False)


@pytest.mark.parametrize("wrap", [srs, local])
async def test_a_wrapper_follows_the_connection_it_wraps(wrap: Any) -> None:
    inner = Inner()
    conn = wrap(inner)
    assert conn.usable
    inner.usable = False
    assert not conn.usable
    assert await conn.can_carry("carried.example")
    assert not await conn.can_carry("other.example")
    assert inner.asked == ["carried.example", "other.example"]
    assert not inner.closed
    await conn.close()
    assert inner.closed
