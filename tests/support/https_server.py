"""A tiny HTTPS server on loopback for MTA-STS policy fetches.

Serves scripted responses per path from the test's event loop::

    async with HttpsTestServer(server_ctx) as server:
        server.responses["/.well-known/mta-sts.txt"] = HttpsResponse(body=b"version: STSv1...")
        ...
        assert server.hits["/.well-known/mta-sts.txt"] == 1

Unknown paths get 404. ``requests`` records each request's line and headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import Counter
from dataclasses import dataclass
from types import TracebackType

__all__ = ["HttpsResponse", "HttpsTestServer"]


@dataclass
class HttpsResponse:
    status: int = 200
    reason: str = "OK"
    content_type: str | None = "text/plain"
    body: bytes = b""
    chunked: bool = False  # Transfer-Encoding: chunked instead of Content-Length
    send_length: bool = True  # False: body delimited by closing the connection
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds before answering (timeout tests)


@dataclass
class RecordedRequest:
    line: str
    headers: dict[str, str]


class HttpsTestServer:
    def __init__(
        self, ssl_context: ssl.SSLContext, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self.responses: dict[str, HttpsResponse] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[RecordedRequest] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[object]] = set()

    async def start(self) -> HttpsTestServer:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, ssl=self.ssl_context, ssl_handshake_timeout=5
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
        await self._server.wait_closed()
        self._server = None
        await asyncio.sleep(0)

    async def __aenter__(self) -> HttpsTestServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head[:-4].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
            self.requests.append(RecordedRequest(lines[0], headers))
            parts = lines[0].split(" ")
            path = parts[1] if len(parts) > 1 else ""
            self.hits[path] += 1
            response = self.responses.get(path) or HttpsResponse(404, "Not Found", body=b"nope\n")
            if response.delay:
                await asyncio.sleep(response.delay)
            writer.write(_encode(response))
            await writer.drain()
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1):
                    await writer.wait_closed()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.transport.abort()
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._handlers.discard(task)
            if not writer.transport.is_closing():
                writer.transport.abort()


def _encode(response: HttpsResponse) -> bytes:
    head = [f"HTTP/1.1 {response.status} {response.reason}", "Connection: close"]
    if response.content_type is not None:
        head.append(f"Content-Type: {response.content_type}")
    body = response.body
    if response.chunked:
        head.append("Transfer-Encoding: chunked")
        half = len(body) // 2
        pieces = [p for p in (body[:half], body[half:]) if p]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    elif response.send_length:
        head.append(f"Content-Length: {len(body)}")
    head.extend(f"{k}: {v}" for k, v in response.headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
