"""Asyncio driver for LMTP (RFC 2033): the SMTP session driver, over TCP or a Unix socket.

:class:`LmtpSession` is an :class:`~outrider.delivery.smtp_client.SmtpSession` whose
protocol core speaks LMTP (LHLO, then one reply per accepted recipient after the
data), so pipelining, streaming a big body, the phase timeouts, RSET between messages
and QUIT on close are the same code as for SMTP. An LMTP server is local or on the
site's own network: no STARTTLS, no source address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from outrider.delivery.smtp_client import (
    SmtpConnectError,
    SmtpSession,
    SmtpTimeouts,
    TransactionResult,
    _ClientProtocol,
)
from outrider.message.envelope import Envelope, Recipient
from outrider.smtp.client import SmtpClientConnection
from outrider.spool.reader import Body

__all__ = ["LmtpResult", "LmtpSession", "LmtpTarget"]


@dataclass(frozen=True, slots=True)
class LmtpTarget:
    """Where the LMTP server listens: ``host`` and ``port``, or a Unix socket ``path``."""

    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, text: str) -> LmtpTarget:
        """``HOST:PORT``, ``[IPv6]:PORT`` or ``unix:/path`` (the part after ``lmtp:`` in
        a domain's ``transport``); raises ValueError."""
        if text.startswith("unix:"):
            path = text[5:]
            if not path.startswith("/") or "\x00" in path:
                raise ValueError(f"LMTP socket path {path!r} is not an absolute path")
            return cls(path=path)
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"LMTP address {text!r} is not HOST:PORT or unix:/path")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            ipaddress.IPv6Address(host)  # raises ValueError
        elif ":" in host:
            raise ValueError(f"LMTP address {text!r}: write an IPv6 address as [ADDRESS]:PORT")
        return cls(host=host, port=int(port))

    def describe(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(slots=True)
class LmtpResult:
    """A transaction's replies with, per recipient, the command its reply answered:
    "mail", "rcpt" or "data-end" (an RCPT-accepted recipient's own reply to the data)."""

    transaction: TransactionResult
    phases: list[str]


class _LmtpProtocol(_ClientProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class LmtpSession(SmtpSession):
    """One connected and LHLO'd LMTP session, reusable for several messages."""

    @classmethod
    async def open(
        cls, target: LmtpTarget, *, lhlo_name: str, timeouts: SmtpTimeouts
    ) -> LmtpSession:
        """Connect, read the greeting and LHLO; raises
        :class:`~outrider.delivery.smtp_client.SmtpConnectError`."""
        loop = asyncio.get_running_loop()
        where = target.describe()
        proto = _LmtpProtocol(SmtpClientConnection(lhlo_name, lmtp=True))
        try:
            async with asyncio.timeout(timeouts.connect):
                if target.path:
                    await loop.create_unix_connection(lambda: proto, target.path)
                else:
                    await loop.create_connection(lambda: proto, target.host, target.port)
        except TimeoutError:
            raise SmtpConnectError(
                f"timeout connecting to {where}", address=where, host=where
            ) from None
        except OSError as exc:
            raise SmtpConnectError(
                f"cannot connect to {where}: {exc}", address=where, host=where
            ) from exc
        address = where
        if not target.path:
            peer = proto.transport.get_extra_info("peername") if proto.transport else None
            address = str(peer[0]) if peer else target.host
        session = cls(proto, address=address, host=where, timeouts=timeouts)
        try:
            await session._handshake(None, False, None, False)
        except BaseException:
            await session._drop()
            raise
        return session

    async def deliver(
        self, envelope: Envelope, recipients: Sequence[Recipient], body: Body
    ) -> LmtpResult:
        """:meth:`send`, and which command each recipient's reply answered."""
        before = self._core.last_transaction
        result = await self.send(envelope, recipients, body)
        tx = self._core.last_transaction
        ours = tx is not None and tx is not before
        accepted = set(tx.accepted) if tx is not None and ours else set()
        data = tx is not None and ours and (tx.body_sent or tx.data_reply is not None)
        phases = []
        for i, item in enumerate(result.results):
            if data and i in accepted:
                phases.append("data-end")
            elif result.mail_reply is not None and item.reply is result.mail_reply:
                phases.append("mail")
            else:
                phases.append("rcpt")
        return LmtpResult(result, phases)
