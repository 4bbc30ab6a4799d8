"""The loopback DNS server with one more fault: truncated UDP answers.

:class:`DnsTestServer` already drops queries (the client times out) and answers
SERVFAIL. :class:`TruncatingDnsServer` adds what a middlebox or a broken authority does
to answers: every UDP answer for a chosen name comes back empty with the TC bit set, so
the client must ask again over TCP; with ``tcp=False`` the TCP retry is cut off as well
(the connection is closed unanswered, as when TCP/53 is blocked), so the name cannot be
resolved at all.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import dns.flags
import dns.message
import dns.name

from tests.support.dns_server import DnsTestServer

__all__ = ["TruncatingDnsServer"]


def _name(name: str | dns.name.Name) -> str:
    text = name.to_text(omit_final_dot=True) if isinstance(name, dns.name.Name) else name
    return text.rstrip(".").lower()


class TruncatingDnsServer(DnsTestServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._faults_lock = threading.Lock()
        self._truncated: dict[str, bool] = {}  # name -> whether the TCP retry is answered
        self.truncated = Counter[str]()  # name -> UDP answers sent with TC
        self.tcp_refused = Counter[str]()  # name -> TCP queries cut off

    def truncate(self, name: str, *, tcp: bool = True, enabled: bool = True) -> None:
        """Answer UDP queries for ``name`` (any type) with TC; over TCP answer only if
        ``tcp``."""
        with self._faults_lock:
            if enabled:
                self._truncated[_name(name)] = tcp
            else:
                self._truncated.pop(_name(name), None)

    def _respond_bytes(self, data: bytes, *, udp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(data)
            name = _name(query.question[0].name)
        except Exception:  # malformed: the base class ignores it
            return super()._respond_bytes(data, udp=udp)
        with self._faults_lock:
            tcp_works = self._truncated.get(name)
            if tcp_works is not None and udp:
                self.truncated[name] += 1
            elif tcp_works is False:
                self.tcp_refused[name] += 1
        if tcp_works is None or (tcp_works and not udp):
            return super()._respond_bytes(data, udp=udp)
        if not udp:
            # The base class's TCP handler closes the connection on a ConnectionError.
            raise ConnectionResetError("TCP fallback blocked for this name")
        response = dns.message.make_response(query)
        response.flags |= dns.flags.TC | dns.flags.AA
        wire: bytes = response.to_wire()
        return wire
