"""A server that, like llama.cpp on one HTTP thread, serves one streamed request per
connection and one connection at a time.

`CloseServer(mode)` on 127.0.0.1 (port 0), from a background thread with its own loop:
- "close": advertises keep-alive, then closes the connection right after each stream;
- "stale": advertises keep-alive and leaves the connection open, but resets it without a
  byte when a second request arrives on it (the client's pooled connection is stale).
Connections are accepted at once (the kernel would anyway) but read one at a time: a request
waiting its turn has been written by the client and sees no response headers yet, as on a
saturated llama.cpp whose HTTP threads are all streaming. Every answer is a short valid chat
stream: role, TOKENS content chunks TOKEN_GAP_S apart, finish, usage, [DONE].
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from loopback import ThreadedServer

TOKENS = 4
TOKEN_GAP_S = 0.01


def _events() -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "c", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    objs = [chunk({"role": "assistant", "content": ""}), *(chunk({"content": f" t{i}"}) for i in range(TOKENS)),
            chunk({}, "stop"), {"id": "c", "object": "chat.completion.chunk", "choices": [],
                                "usage": {"prompt_tokens": 5, "completion_tokens": TOKENS, "total_tokens": 5 + TOKENS}}]
    return [b"data: " + json.dumps(o).encode() + b"\n\n" for o in objs] + [b"data: [DONE]\n\n"]


EVENTS = _events()


class CloseServer(ThreadedServer):
    thread_name = "close-server"

    def __init__(self, mode: str = "close") -> None:
        assert mode in ("close", "stale")
        super().__init__()
        self.mode = mode
        self.connections = 0
        self.request_arrivals: list[float] = []  # perf_counter when each request head was read
        self._server: asyncio.Server | None = None
        self._turn: asyncio.Lock | None = None

    async def _start(self) -> None:
        self._turn = asyncio.Lock()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        assert self._turn is not None
        try:
            async with self._turn:
                await self._answer(reader, writer)
            if self.mode == "stale":
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)  # the next request: dropped
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, asyncio.LimitOverrunError):
            pass
        writer.transport.abort() if self.mode == "stale" else writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.request_arrivals.append(time.perf_counter())
        lines = head.lower().split(b"\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        if lines[0].startswith(b"get"):
            body = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Keep-Alive: timeout=5, max=100\r\nTransfer-Encoding: chunked\r\n\r\n")
        for event in EVENTS:
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.sleep(TOKEN_GAP_S)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
