"""Counting inbound connections from the kernel's socket table."""

from __future__ import annotations

import socket
from pathlib import Path

from outrider.runtime.inbound_count import count_established, inbound_connections

LINES = [
    # listening socket on 2525 (state 0A), two established to it, one to another port,
    # one in TIME_WAIT (06)
    "0: 0100007F:09DD 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
    "1: 0100007F:09DD 0100007F:C350 01 00000000:00000000 00:00000000 00000000 0 0 2",
    "2: 0100007F:09DD 0100007F:C351 01 00000000:00000000 00:00000000 00000000 0 0 3",
    "3: 0100007F:0019 0100007F:C352 01 00000000:00000000 00:00000000 00000000 0 0 4",
    "4: 0100007F:09DD 0100007F:C353 06 00000000:00000000 00:00000000 00000000 0 0 5",
    "garbage",
]


def test_counts_only_established_sockets_on_the_ports() -> None:
    assert count_established(LINES, {2525}) == 2
    assert count_established(LINES, {25, 2525}) == 3
    assert count_established(LINES, {587}) == 0


def test_reads_the_real_table_and_sees_a_loopback_connection(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        before = inbound_connections({port})
        assert before == 0
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = server.accept()
            with accepted:
                # both ends are established: the accepted one has the listening port
                assert inbound_connections({port}) == 1
    assert inbound_connections({port}, [tmp_path / "missing"]) is None
