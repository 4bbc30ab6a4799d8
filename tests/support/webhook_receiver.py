"""A loopback webhook receiver (aiohttp in a thread): records batches, answers as told."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from outrider.webhooks.signing import verify


@dataclass
class Received:
    batch_id: str
    events: list[dict[str, Any]]
    signed: bool


@dataclass
class WebhookReceiver:
    secret: bytes
    port: int
    statuses: list[int] = field(default_factory=list)  # answers to give first, then 200
    batches: list[Received] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)  # batch id of every POST
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self) -> list[dict[str, Any]]:
        return [e for b in self.batches for e in b.events]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        batch_id = request.headers.get("X-Outrider-Batch", "")
        self.attempts.append(batch_id)
        if self.statuses:
            return web.Response(status=self.statuses.pop(0))
        signed = verify(
            self.secret,
            request.headers.get("X-Outrider-Timestamp", ""),
            body,
            request.headers.get("X-Outrider-Signature", ""),
        )
        self.batches.append(Received(batch_id, json.loads(body), signed))
        return web.Response(status=204)

    def start(self) -> None:
        ready = threading.Event()

        def main() -> None:
            loop = self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/hook", self._handle)
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            loop.run_until_complete(site.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None
