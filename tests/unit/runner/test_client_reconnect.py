"""Stale keep-alive connections against a server that, like llama.cpp, advertises keep-alive
but serves one request per connection: whatever comes next on it is dropped unanswered."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from bench.runner.client import ClientConfig, ClientError, StreamClient

EVENTS = [b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n',
          b"data: [DONE]\n\n"]


class OneShotServer:
    """Answers the first request on each connection with a short SSE stream and a
    `Keep-Alive` header; on a second request it resets the connection without a byte."""

    def __init__(self) -> None:
        self.answered = 0
        self.dropped = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> OneShotServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop_listening()
        assert self._server is not None
        await self._server.wait_closed()

    def stop_listening(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._answer(reader, writer)
            await reader.readuntil(b"\r\n\r\n")  # the next request on this connection
            self.dropped += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed it first
        writer.transport.abort()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.lower().split(b"\r\n")
                      if line.startswith(b"content-length:"))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Keep-Alive: timeout=5, max=100\r\nTransfer-Encoding: chunked\r\n\r\n")
        for event in EVENTS:
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        self.answered += 1


async def _stream(client: StreamClient) -> bool:
    response = await client.open_stream("/chat/completions", orjson.dumps({"model": "m", "stream": True}))
    body = b"".join([data async for _, data in response.reads()])
    await response.aclose()
    assert body == b"".join(EVENTS)
    return response.reconnected


async def test_every_stale_pooled_connection_is_passed_over_not_only_the_first():
    async with OneShotServer() as server:
        client = StreamClient(ClientConfig(f"http://127.0.0.1:{server.port}/v1", None, 2.0, 16))
        try:
            # Four streams that end together leave four pooled connections the server will
            # not serve again; each later request draws one of them first.
            assert await asyncio.gather(*[_stream(client) for _ in range(4)]) == [False] * 4
            later = [await _stream(client) for _ in range(4)]
        finally:
            await client.aclose()
    assert later == [True] * 4
    assert server.answered == 8 and server.dropped == 4


async def test_a_retry_that_fails_too_is_an_error_marked_reconnected():
    async with OneShotServer() as server:
        client = StreamClient(ClientConfig(f"http://127.0.0.1:{server.port}/v1", None, 2.0, 16))
        try:
            assert await _stream(client) is False
            server.stop_listening()  # the pooled connection stays; the retry's new one is refused
            with pytest.raises(ClientError) as failed:
                await _stream(client)
        finally:
            await client.aclose()
    assert failed.value.kind == "connect_refused" and failed.value.reconnected
    assert server.dropped == 1
