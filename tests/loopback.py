"""Scripted servers on 127.0.0.1 (port 0), each run from a background thread with its own
event loop, for tests that need a server the simulator cannot be.

`ThreadedServer`: the thread, the loop and `with Server() as s: s.base_url ...`; its
subclasses start and stop their server on that loop. `LoopbackServer`: an aiohttp app whose
subclasses add their routes in `routes(app)` (handlers are cancelled when their client goes
away; shutdown waits 0.5 s).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Self

from aiohttp import web


class ThreadedServer:
    """A server on 127.0.0.1 whose event loop runs in a background thread: subclasses start
    it in `_start` (setting `port`) and stop it in `_stop`, both on that loop."""

    thread_name = "loopback-server"

    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=self.thread_name, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError


class LoopbackServer(ThreadedServer):
    """An aiohttp application; subclasses add their routes in `routes(app)`."""

    def __init__(self) -> None:
        super().__init__()
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def _start(self) -> None:
        app = web.Application(client_max_size=1 << 20)
        self.routes(app)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
