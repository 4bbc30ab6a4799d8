"""The asyncio session's own duties: pregreet, connection gate, limits, Received protocol."""

from __future__ import annotations

import smtplib

from outrider.inbound.limits import ConnectionGate
from tests.support.daemon import wait_until
from tests.support.inbound import in_thread, raw_dialogue, start_server


async def test_pregreet_client_is_dropped() -> None:
    server = await start_server(relay_networks=("10.9.9.9/32",), greeting_delay=0.2)
    try:
        out = await in_thread(raw_dialogue, server.port, b"EHLO fast.test\r\n")
        assert out == b"554 5.5.0 Protocol error: client spoke before the greeting\r\n"
        patient = await in_thread(raw_dialogue, server.port)
        assert patient.startswith(b"220 mta.outrider.test ")
    finally:
        await server.stop()


async def test_trusted_clients_are_greeted_at_once() -> None:
    server = await start_server(relay_networks=("127.0.0.0/8",), greeting_delay=30.0)
    try:
        out = await in_thread(raw_dialogue, server.port, b"EHLO c\r\n")
        assert out.startswith(b"220 ") and b"\r\n250-" in out
    finally:
        await server.stop()


async def test_gate_refuses_and_releases() -> None:
    gate = ConnectionGate(max_connections=1, max_per_client=0, rate_per_client=None)
    server = await start_server(gate=gate)
    try:

        def dialogue() -> bytes:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as first:
                first.ehlo()
                return raw_dialogue(server.port)

        assert (await in_thread(dialogue)).startswith(b"421 4.7.0 ")
        await in_thread(wait_until, lambda: gate.total == 0, 5.0, "released")
        assert (await in_thread(raw_dialogue, server.port)).startswith(b"220 ")
    finally:
        await server.stop()


async def test_received_protocol_names() -> None:
    server = await start_server()
    try:

        def send(ehlo: bool, utf8: bool) -> None:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
                if ehlo:
                    smtp.ehlo("c.test")
                else:
                    smtp.helo("c.test")
                options = ["SMTPUTF8"] if utf8 else []
                smtp.sendmail("a@b.test", ["x@relay.test"], b"Subject: x\r\n\r\nb\r\n", options)

        await in_thread(send, False, False)
        await in_thread(send, True, False)
        await in_thread(send, True, True)
        protocols = [s.data.split(b" with ", 1)[1].split(b" ", 1)[0] for s in server.stored]
        assert protocols == [b"SMTP", b"ESMTP", b"UTF8SMTP"]
    finally:
        await server.stop()
