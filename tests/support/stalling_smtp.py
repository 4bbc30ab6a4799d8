"""A loopback SMTP server that stalls where :class:`ScriptedSmtpServer` cannot.

``ScriptedSmtpServer`` hangs or drops at a phase; some faults need a server that keeps
the connection alive and misbehaves at the socket level:

- ``"slow-data"``: after ``354`` it reads the message one byte per second from a socket
  with a tiny receive buffer, so the sender's data writes stop making progress;
- ``"silent-tls"``: it offers STARTTLS, answers ``220`` and then never speaks TLS;
- ``"sink"``: a plain server that accepts every message (no PIPELINING, no CHUNKING).

``mode`` may be changed while serving; each new connection reads it once. Threads, not
asyncio, so it behaves the same whichever event loop the client uses::

    with StallingSmtpServer("slow-data") as server:
        ...  # deliver to server.host, server.port
        server.mode = "sink"
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Literal

__all__ = ["StallingSmtpServer"]

Mode = Literal["slow-data", "silent-tls", "sink"]
_SMALL_RCVBUF = 4096  # the kernel doubles it and keeps a minimum; still a few KiB


class StallingSmtpServer:
    def __init__(self, mode: Mode, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.mode: Mode = mode
        self.host = host
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self.stalled = 0  # connections that reached the stall (354 read slowly, or TLS)
        self.slow_bytes = 0  # message bytes read one per second
        self.messages: list[bytes] = []  # complete messages accepted in "sink" mode
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Set before listen() so accepted sockets inherit it (and a small window).
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SMALL_RCVBUF)
        self._listener.bind((host, port))
        self.port: int = self._listener.getsockname()[1]

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> StallingSmtpServer:
        self._listener.listen(16)
        self._spawn(self._accept_loop, "stalling-smtp-accept")
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(10)

    def __enter__(self) -> StallingSmtpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.add(conn)
            self._spawn(self._serve, "stalling-smtp-conn", conn)

    # -- one connection ------------------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        mode = self.mode
        try:
            with conn:
                conn.sendall(b"220 stall.test ESMTP stalling test server\r\n")
                self._session(_Reader(conn), mode)
        except OSError:
            pass  # the client gave up: that is the point
        finally:
            with self._lock:
                self._conns.discard(conn)

    def _session(self, reader: _Reader, mode: Mode) -> None:
        conn = reader.conn
        while not self._stop.is_set():
            line = reader.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                tls = b"250-STARTTLS\r\n" if mode == "silent-tls" else b""
                conn.sendall(b"250-stall.test\r\n" + tls + b"250 8BITMIME\r\n")
            elif verb == b"STAR" and mode == "silent-tls":
                conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
                self._count_stall()
                self._hold(reader)
                return
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                conn.sendall(b"250 2.0.0 OK\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                if mode == "slow-data":
                    self._count_stall()
                    self._read_slowly(reader)
                    return
                message = self._read_message(reader)
                if message is None:
                    return
                with self._lock:
                    self.messages.append(message)
                conn.sendall(b"250 2.0.0 OK queued\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(b"502 5.5.2 Command not implemented\r\n")

    def _count_stall(self) -> None:
        with self._lock:
            self.stalled += 1

    @staticmethod
    def _read_message(reader: _Reader) -> bytes | None:
        lines: list[bytes] = []
        while True:
            line = reader.readline()
            if not line:
                return None
            if line == b".\r\n":
                return b"".join(lines)
            lines.append(line)

    def _read_slowly(self, reader: _Reader) -> None:
        """One byte per second until the client closes the connection."""
        while not self._stop.wait(1.0):
            if not reader.read1():
                return
            with self._lock:
                self.slow_bytes += 1

    def _hold(self, reader: _Reader) -> None:
        """Keep the connection open, saying nothing, until the client closes it."""
        reader.conn.settimeout(0.2)
        while not self._stop.is_set():
            try:
                if not reader.conn.recv(4096):
                    return
            except TimeoutError:
                continue


class _Reader:
    """Lines from a socket without reading ahead more than one ``recv`` returns."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self._buf = bytearray()

    def readline(self, limit: int = 1 << 20) -> bytes:
        while b"\n" not in self._buf and len(self._buf) < limit:
            chunk = self.conn.recv(65536)
            if not chunk:
                return b""
            self._buf += chunk
        end = self._buf.find(b"\n") + 1 or len(self._buf)
        line = bytes(self._buf[:end])
        del self._buf[:end]
        return line

    def read1(self) -> bytes:
        """Exactly one byte: from what was read already, else one byte from the socket."""
        if self._buf:
            byte = bytes(self._buf[:1])
            del self._buf[:1]
            return byte
        return self.conn.recv(1)
