"""A small authoritative DNS server on loopback, for tests that must not touch real DNS.

Serves a zone dict over UDP and TCP on one port::

    records = {
        "example.test": {"MX": [(10, "mx1.example.test"), (20, "mx2.example.test")]},
        "mx1.example.test": {"A": ["127.0.0.2"], "AAAA": ["::1"], "TTL": 30},
        "alias.example.test": {"CNAME": ["mx1.example.test"]},
    }

Each name maps record types (``MX``, ``A``, ``AAAA``, ``CNAME``, ``TXT``, ``NS``,
``PTR``) to value lists; the optional ``"TTL"`` key sets that name's TTL. The
server is authoritative for ``zones`` (default: the last label of every name,
e.g. ``test``): unknown names inside a zone get NXDOMAIN with the zone SOA in
the authority section, names outside get REFUSED.

Use it either as ``async with DnsTestServer(records) as server:`` in the test's
event loop, or from another thread (``start_in_thread()`` / ``stop()``) when the
client is a subprocess or blocking code. ``server.nameserver`` is the
``"127.0.0.1:port"`` string for ``MxResolver`` or the daemon's ``[dns]`` config.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["DnsTestServer", "Records"]

Records = Mapping[str, Mapping[str, Any]]

_MAX_CNAME_CHAIN = 8
_UDP_PLAIN_LIMIT = 512  # RFC 1035 limit for queries without EDNS


def _key(name: str | dns.name.Name) -> str:
    if isinstance(name, dns.name.Name):
        return name.to_text(omit_final_dot=True).lower()
    return name.rstrip(".").lower()


def _rdata_text(rdtype: str, value: Any) -> str:
    """Presentation form of one value; names become absolute so no origin is needed."""
    if rdtype == "MX":
        preference, exchange = value
        return f"{int(preference)} {_absolute(str(exchange))}"
    if rdtype in ("CNAME", "NS", "PTR"):
        return _absolute(str(value))
    if rdtype == "TXT" and not str(value).startswith('"'):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def _absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


class DnsTestServer:
    """Authoritative UDP+TCP server with fault injection and per-(name, type) query counts."""

    def __init__(
        self,
        records: Records | None = None,
        *,
        zones: Iterable[str] | None = None,
        ttl: int = 300,
        negative_ttl: int = 60,
        host: str = "127.0.0.1",
        port: int = 0,
        shuffle: bool = False,
    ) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, list[Any]]] = {}
        self._ttls: dict[str, int] = {}
        self._explicit_zones = {_key(z) for z in zones} if zones is not None else None
        self.default_ttl = ttl
        self.negative_ttl = negative_ttl
        self._host = host
        self._requested_port = port
        self._shuffle = shuffle  # False: records go out in configured order (reproducible tests)
        self._servfail: set[tuple[str, str | None]] = set()
        self._drop: set[tuple[str, str | None]] = set()
        self._queries: Counter[tuple[str, str]] = Counter()
        self.tcp_queries = 0
        self.errors: list[BaseException] = []  # unexpected handler failures, for debugging
        for name, entry in (records or {}).items():
            self._load_name(name, entry)

        self._port: int | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_writers: set[asyncio.StreamWriter] = set()
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_stop: asyncio.Event | None = None

    # -- address ------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        if self._port is None:
            raise RuntimeError("DNS test server is not running")
        return self._host, self._port

    @property
    def nameserver(self) -> str:
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # -- zone data (thread-safe; may be changed while serving) ----------------------------

    def _load_name(self, name: str, entry: Mapping[str, Any]) -> None:
        key = _key(name)
        for rdtype, values in entry.items():
            if rdtype.upper() == "TTL":
                self._ttls[key] = int(values)
                continue
            self._set(key, rdtype.upper(), list(values))

    def _set(self, key: str, rdtype: str, values: list[Any]) -> None:
        if values:
            for value in values:  # fail at configuration time, not inside the server
                dns.rdata.from_text(dns.rdataclass.IN, rdtype, _rdata_text(rdtype, value))
            self._records.setdefault(key, {})[rdtype] = values
        else:
            self._records.get(key, {}).pop(rdtype, None)
            if key in self._records and not self._records[key]:
                del self._records[key]

    def set_records(
        self, name: str, rdtype: str, values: Sequence[Any], *, ttl: int | None = None
    ) -> None:
        """Replace (or with an empty list, delete) the ``rdtype`` records of ``name``."""
        with self._lock:
            key = _key(name)
            self._set(key, rdtype.upper(), list(values))
            if ttl is not None:
                self._ttls[key] = ttl

    def remove_name(self, name: str) -> None:
        with self._lock:
            self._records.pop(_key(name), None)

    def set_ttl(self, name: str, ttl: int) -> None:
        with self._lock:
            self._ttls[_key(name)] = ttl

    def servfail(self, name: str, rdtype: str | None = None, *, enabled: bool = True) -> None:
        """Answer SERVFAIL for ``name`` (all types when ``rdtype`` is None)."""
        self._toggle(self._servfail, name, rdtype, enabled)

    def drop(self, name: str, rdtype: str | None = None, *, enabled: bool = True) -> None:
        """Never answer queries for ``name``, so clients time out."""
        self._toggle(self._drop, name, rdtype, enabled)

    def _toggle(
        self, target: set[tuple[str, str | None]], name: str, rdtype: str | None, enabled: bool
    ) -> None:
        item = (_key(name), rdtype.upper() if rdtype else None)
        with self._lock:
            if enabled:
                target.add(item)
            else:
                target.discard(item)

    # -- query counters -------------------------------------------------------------------

    def query_count(self, name: str, rdtype: str) -> int:
        with self._lock:
            return self._queries[(_key(name), rdtype.upper())]

    @property
    def total_queries(self) -> int:
        with self._lock:
            return sum(self._queries.values())

    def reset_counts(self) -> None:
        with self._lock:
            self._queries.clear()
            self.tcp_queries = 0

    # -- answering ------------------------------------------------------------------------

    def _zone_of(self, key: str) -> str | None:
        zones = self._explicit_zones
        if zones is None:
            zones = {name.rsplit(".", 1)[-1] for name in self._records}
        best: str | None = None
        for zone in zones:
            if (key == zone or key.endswith("." + zone)) and (
                best is None or len(zone) > len(best)
            ):
                best = zone
        return best

    def _exists(self, key: str) -> bool:
        if key in self._records:
            return True
        suffix = "." + key
        return any(name.endswith(suffix) for name in self._records)  # empty non-terminal

    def _ttl(self, key: str) -> int:
        return self._ttls.get(key, self.default_ttl)

    def _soa(self, zone: str) -> dns.rrset.RRset:
        origin = _absolute(zone)
        text = f"ns.{origin} hostmaster.{origin} 1 3600 600 86400 {self.negative_ttl}"
        return dns.rrset.from_text(origin, self.negative_ttl, "IN", "SOA", text)

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        """Build the response to ``query``, or None to drop it."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.flags &= ~dns.flags.RA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qkey = _key(question.name)
        qtype = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self._queries[(qkey, qtype)] += 1
            if (qkey, qtype) in self._drop or (qkey, None) in self._drop:
                return None
            if (qkey, qtype) in self._servfail or (qkey, None) in self._servfail:
                response.flags &= ~dns.flags.AA
                response.set_rcode(dns.rcode.SERVFAIL)
                return response
            if question.rdclass != dns.rdataclass.IN:
                response.set_rcode(dns.rcode.REFUSED)
                return response
            self._fill(response, question.name, qkey, qtype)
        return response

    def _fill(
        self, response: dns.message.Message, qname: dns.name.Name, key: str, qtype: str
    ) -> None:
        zone = self._zone_of(key)
        if zone is None:
            response.flags &= ~dns.flags.AA
            response.set_rcode(dns.rcode.REFUSED)
            return
        owner = qname
        for _ in range(_MAX_CNAME_CHAIN):
            entry = self._records.get(key, {})
            if qtype in entry:
                response.answer.append(self._rrset(owner, key, qtype, entry[qtype]))
                return
            if qtype != "CNAME" and "CNAME" in entry:
                target = entry["CNAME"][0]
                response.answer.append(self._rrset(owner, key, "CNAME", [target]))
                owner = dns.name.from_text(_absolute(str(target)))
                key = _key(owner)
                zone = self._zone_of(key)
                if zone is None:  # out of our authority: the client chases it elsewhere
                    return
                continue
            if not self._exists(key):
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._soa(zone))
            return

    def _rrset(
        self, owner: dns.name.Name, key: str, rdtype: str, values: list[Any]
    ) -> dns.rrset.RRset:
        texts = [_rdata_text(rdtype, value) for value in values]
        return dns.rrset.from_text_list(owner, self._ttl(key), "IN", rdtype, texts)

    def _respond_bytes(self, data: bytes, *, udp: bool) -> bytes | None:
        """Wire response to ``data``; None to stay silent (malformed query or drop)."""
        try:
            query = dns.message.from_wire(data)
        except Exception:  # malformed: ignore, like real servers under garbage
            return None
        if query.flags & dns.flags.QR:
            return None
        try:
            response = self.answer(query)
            if response is None:
                return None
            if not udp:
                # explicit size: the default would be the EDNS UDP payload
                return response.to_wire(max_size=65535, want_shuffle=self._shuffle)
            limit = max(_UDP_PLAIN_LIMIT, query.payload) if query.edns >= 0 else _UDP_PLAIN_LIMIT
            try:
                return response.to_wire(max_size=limit, want_shuffle=self._shuffle)
            except dns.exception.TooBig:
                truncated = dns.message.make_response(query)
                truncated.flags |= dns.flags.TC | dns.flags.AA
                return truncated.to_wire(max_size=limit)
        except Exception as exc:  # never let one bad query take the server down
            self.errors.append(exc)
            return None

    # -- asyncio lifecycle ------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        """Bind UDP and TCP on the same port in the running loop."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        for _attempt in range(20):
            udp_sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                udp_sock.bind((self._host, self._requested_port))
                port = udp_sock.getsockname()[1]
                tcp_sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    tcp_sock.bind((self._host, port))
                except OSError as exc:
                    tcp_sock.close()
                    if exc.errno == errno.EADDRINUSE and self._requested_port == 0:
                        udp_sock.close()
                        continue  # ephemeral UDP port taken on TCP: pick another
                    raise
            except BaseException:
                udp_sock.close()
                raise
            break
        else:
            raise OSError(errno.EADDRINUSE, "no port free for both UDP and TCP")

        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), sock=udp_sock
        )
        try:
            self._tcp = await asyncio.start_server(self._handle_tcp, sock=tcp_sock)
        except BaseException:
            tcp_sock.close()
            self._udp.close()
            self._udp = None
            raise
        self._port = port
        return self._host, port

    async def close(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._tcp_writers):
                writer.close()
            await self._tcp.wait_closed()
            self._tcp = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        await asyncio.sleep(0)  # let transports finish closing their sockets

    async def __aenter__(self) -> DnsTestServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tcp_writers.add(writer)
        try:
            while True:
                header = await reader.readexactly(2)
                data = await reader.readexactly(int.from_bytes(header, "big"))
                self.tcp_queries += 1
                wire = self._respond_bytes(data, udp=False)
                if wire is not None:
                    writer.write(len(wire).to_bytes(2, "big") + wire)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # client went away
        finally:
            self._tcp_writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -- background-thread lifecycle --------------------------------------------------------

    def start_in_thread(self) -> tuple[str, int]:
        """Serve from a daemon thread with its own loop (for subprocesses and blocking clients)."""
        if self._thread is not None:
            raise RuntimeError("already running in a thread")
        started = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._thread_loop = asyncio.get_running_loop()
            self._thread_stop = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            try:
                await self._thread_stop.wait()
            finally:
                await self.close()

        self._thread = threading.Thread(
            target=asyncio.run, args=(serve(),), name="dns-test-server", daemon=True
        )
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self.address

    def stop(self) -> None:
        """Stop a server started with ``start_in_thread`` and wait for its thread."""
        thread, loop, event = self._thread, self._thread_loop, self._thread_stop
        if thread is None:
            return
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop already finished
                loop.call_soon_threadsafe(event.set)
        thread.join(timeout=10)
        self._thread = self._thread_loop = self._thread_stop = None

    def __enter__(self) -> DnsTestServer:
        self.start_in_thread()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsTestServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        wire = self._server._respond_bytes(data, udp=True)
        if wire is not None and self._transport is not None:
            self._transport.sendto(wire, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from departed clients are not the server's problem
