"""An in-process inbound listener for fast end-to-end tests of the SMTP server side.

A real socket on 127.0.0.1, the real session, protocol core and intake (with the
standard checks), and a spool that keeps what it is given in memory. Clients are
blocking (smtplib, raw sockets) and run in a thread so the listener's event loop
keeps serving.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trustme

from outrider.auth.passwords import ScramCredentials
from outrider.auth.throttle import AuthThrottle
from outrider.inbound.limits import ConnectionGate
from outrider.inbound.receiver import Listener, open_listening_socket
from outrider.inbound.session import ListenerContext, UserDirectory
from outrider.inbound.tls import server_context
from outrider.intake import Check, Intake, IntakePipeline
from outrider.intake.checks import Postmaster, PostmasterAddress, Relay, SenderOwnership, UserRate
from outrider.intake.vmta import VmtaTable
from outrider.message.envelope import Envelope
from outrider.smtp.server import ServerConfig
from outrider.spool.spill import SpilledBody, SpillFile
from tests.support.memory_spool import SpillDir, read_spilled

HOSTNAME = "mta.outrider.test"
POSTMASTER = "hostmaster@relay.test"  # where mail for <Postmaster> is queued


class FakeUsers:
    """Plain-text passwords (no scrypt: fast) and optional sender rights per user."""

    def __init__(
        self,
        users: dict[str, str],
        senders: dict[str, Sequence[str]] | None = None,
        rates: dict[str, str] | None = None,
    ):
        self.users = users
        self.senders = senders or {}
        self.rates = rates or {}
        self.reloads = 0

    def reload_if_changed(self) -> bool:
        self.reloads += 1
        return False

    def verify_password(self, username: str, password: str) -> bool:
        return self.users.get(username) == password

    def scram_credentials(self, username: str) -> ScramCredentials | None:
        return None

    def unknown_user_salt(self, username: str) -> bytes:
        return username.encode().ljust(16, b"\0")[:16]

    def sender_allowed(self, username: str, sender: str) -> bool:
        allowed = self.senders.get(username)
        return allowed is None or sender.lower() in allowed

    def max_msg_rate(self, username: str) -> str | None:
        return self.rates.get(username)


class FakeTransport:
    """Just enough of an asyncio transport to drive an InboundSession by hand; ``extra``
    answers ``get_extra_info`` (a peer on loopback unless given)."""

    def __init__(self, **extra: object) -> None:
        self.extra: dict[str, object] = {"peername": ("127.0.0.1", 40000), **extra}
        self.written = b""
        self.closing = False
        self.aborted = False
        self.reading = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.extra.get(name, default)

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


@dataclass
class Stored:
    envelope: Envelope
    data: bytes


class Recorder:
    """The test intake's spool and sink: keeps every message it is given (a spilled
    one read back into memory)."""

    def __init__(self) -> None:
        self.stored: list[Stored] = []
        self.spills = SpillDir()

    def spill(self, head_len: int) -> SpillFile:
        return self.spills.spill(head_len)

    async def store(self, envelope: Envelope, data: bytes | SpilledBody) -> None:
        self.stored.append(
            Stored(envelope, data if isinstance(data, bytes) else read_spilled(data))
        )

    def accept(self, envelope: Envelope, body: bytes | None) -> None:
        return None


@dataclass
class InboundServer:
    listener: Listener
    stored: list[Stored] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.listener.sock.getsockname()[1])

    @property
    def ctx(self) -> ListenerContext:
        return self.listener.ctx

    async def stop(self) -> None:
        await self.listener.stop(1.0)


def tls_files(ca: trustme.CA, directory: Path, *names: str) -> tuple[Path, Path]:
    """Write a certificate for ``names`` (default 127.0.0.1) and its key; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    cert = ca.issue_cert(*(names or ("127.0.0.1", HOSTNAME)))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key_path.write_bytes(cert.private_key_pem.bytes())
    return cert_path, key_path


def client_tls(ca: trustme.CA, **kwargs: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    for key, value in kwargs.items():
        setattr(ctx, key, value)
    return ctx


async def start_server(
    *,
    relay_domains: Sequence[str] = ("relay.test",),
    relay_networks: Sequence[str] = ("127.0.0.0/8",),
    tls: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    users: UserDirectory | None = None,
    throttle: AuthThrottle | None = None,
    gate: ConnectionGate | None = None,
    role: str = "mx",
    greeting_delay: float = 0.0,
    add_missing_headers: bool = False,
    limits_exempt_trusted: bool = False,
    checks: Sequence[Check] = (),
    **protocol: Any,
) -> InboundServer:
    """Listen on 127.0.0.1 (a free port) with the given settings; ``protocol`` goes to
    ServerConfig (``starttls``, ``auth_mechanisms``, ``require_auth`` ...); ``checks``
    run after the standard ones."""
    recorder = Recorder()
    counter = iter(range(1, 1_000_000))
    postmaster = PostmasterAddress(HOSTNAME, POSTMASTER)
    standard = [SenderOwnership(users), UserRate(users), Relay(relay_domains, postmaster)]
    intake = Intake(
        pipeline=IntakePipeline([*standard, Postmaster(postmaster), *checks]),
        spool=recorder,
        sink=recorder,
        hostname=HOSTNAME,
        vmtas=VmtaTable(known=frozenset({"default"}), sender_defaults={}),
        new_queue_id=lambda: f"Q{next(counter):05d}",
    )
    ctx = ListenerContext(
        name="test",
        protocol_config=replace(ServerConfig(HOSTNAME), **protocol),
        relay_networks=tuple(ipaddress.ip_network(n) for n in relay_networks),
        intake=intake,
        role=role,
        tls=tls,
        implicit_tls=implicit_tls,
        users=users,
        throttle=throttle,
        gate=gate,
        greeting_delay=greeting_delay,
        limits_exempt_trusted=limits_exempt_trusted,
        add_missing_headers=add_missing_headers,
        tls_handshake_timeout=5.0,
    )
    sock = open_listening_socket("127.0.0.1", 0, reuse_port=False)
    listener = Listener(ctx, sock)
    await listener.start()
    return InboundServer(listener, recorder.stored)


def tls_server_context(ca: trustme.CA, directory: Path, min_version: str = "TLSv1.2") -> Any:
    cert, key = tls_files(ca, directory)
    return server_context(cert, key, min_version=min_version)


def raw_dialogue(port: int, *sends: bytes, timeout: float = 5.0) -> bytes:
    """Connect, send each chunk, then read until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for chunk in sends:
            sock.sendall(chunk)
        return read_all(sock, quiet=0.3)


def read_all(sock: socket.socket, quiet: float = 0.3) -> bytes:
    sock.settimeout(quiet)
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return out
        if not data:
            return out
        out += data


async def in_thread(func: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(func, *args, **kwargs)
