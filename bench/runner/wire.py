"""aiohttp plumbing for the direct send path: stamped socket reads, the send hold, sessions.

Nothing here knows the openai SDK. A session from `session_factory` opens plain-TCP
connections on the kernel-stamped transport (`bench.sockstamp`) where it can, stamps
every socket read in the connection's protocol, holds each request until its `SendLog`'s
`not_before` once a connection is in hand, and records when the request's last byte left.
`AioStreamResponse` reads a response of such a session. The connection protocol (stamps,
chunked bodies decoded without aiohttp's parser, bodies fed from the socket callback) is
`bench.runner.protocol`'s.
"""

from __future__ import annotations

import asyncio
import functools
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from types import SimpleNamespace
from typing import Any, cast

import aiohappyeyeballs
import aiohttp
from aiohttp.client_proto import ResponseHandler

from bench.runner.protocol import DirectReader, Feeder, StampingProtocol, describe_aio
from bench.runner.streamapi import ChunkFeed, ClientError, Feed, SendLog, sleep_until
from bench.sockstamp import StampedTransport, stamped_transport_supported

__all__ = [
    "REUSED", "SEND_LOG", "SENT_BOX", "AioStreamResponse", "StampingProtocol", "arrival_stamp_source",
    "describe_aio", "session_factory", "split_by_arrival", "stamp_log", "stamped_reads",
]

# Set by the client for the duration of one request. What runs in that request's task
# appends to the box: the connector `REUSED` for a pooled connection, the stamped transport
# (or, on a TLS connection, aiohttp's trace hook) the time the request went out.
SENT_BOX: ContextVar[list[float] | None] = ContextVar("bench_sent_box", default=None)
SEND_LOG: ContextVar[SendLog | None] = ContextVar("bench_send_log", default=None)
REUSED = -1.0  # marker in the sent box: this attempt went out on a pooled keep-alive connection


async def _on_sent(_session: Any, _ctx: SimpleNamespace, _params: Any) -> None:
    """aiohttp's trace hook, for transports that do not stamp their writes (TLS)."""
    now = time.perf_counter()
    box = SENT_BOX.get()
    if box is not None:
        box.append(now)
    log = SEND_LOG.get()
    if log is not None:
        log.sent_at = now


async def _hold(log: SendLog) -> None:
    """Connection in hand (pooled or new), nothing written yet: wait for `log.not_before`."""
    start = time.perf_counter()
    await sleep_until(log.not_before)
    log.held_s += time.perf_counter() - start


def arrival_stamp_source(base_url: str) -> str:
    """Where chunk arrival stamps for `base_url` come from: "kernel" (the socket's receive
    time) or "read" (taken in data_received, late by any event-loop delay)."""
    return "kernel" if stamped_transport_supported() and base_url.lower().startswith("http://") else "read"


class _SendStampedTransport(StampedTransport):
    """Also stamps a request as sent once its last byte is in the kernel's hands.

    aiohttp's chunk-sent hook runs before a chunk is written: for a body larger than the
    socket takes in one call (a 100K-token prompt), the rest went out on later writable
    events, whenever the loop got to them, and a stamp from the hook would put that wait
    inside TTFT. `write` runs in the request's task, so the context's log and box are its own.
    """

    _send_log: SendLog | None = None
    _sent_box: list[float] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._send_log = SEND_LOG.get()
        self._sent_box = SENT_BOX.get()
        super().write(data)

    def _written(self, at: float) -> None:
        log, box = self._send_log, self._sent_box
        if log is not None:
            log.sent_at = at if log.sent_at is None else max(log.sent_at, at)
        if box is not None:
            box.append(at)


class _HoldingConnector(aiohttp.TCPConnector):
    """aiohttp's connector, marking a pooled connection's reuse in the request's sent box and
    holding the request until its `SendLog`'s `not_before` once it has a connection.

    Here rather than in aiohttp's trace hooks: with any trace config aiohttp builds and
    awaits every hook of every request (about a tenth of a short request's CPU)."""

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109 - aiohttp's signature
        conn = await super().connect(req, traces, timeout)
        protocol = conn.protocol
        if isinstance(protocol, StampingProtocol):
            if protocol.requests:
                box = SENT_BOX.get()
                if box is not None:
                    box.append(REUSED)
            protocol.requests += 1
        log = SEND_LOG.get()
        if log is not None and log.not_before > time.perf_counter():
            try:
                await _hold(log)
            except BaseException:
                conn.release()  # nothing written: the connection goes back to the pool
                raise
        return conn


class _StampingConnector(_HoldingConnector):
    """aiohttp's connector, opening plain-TCP connections on a kernel-stamped transport."""

    async def _wrap_create_connection(self, *args: Any, addr_infos: Any, req: Any,
                                      timeout: Any,  # noqa: ASYNC109 - aiohttp's signature
                                      client_error: type[Exception] = aiohttp.ClientConnectorError,
                                      **kwargs: Any) -> tuple[asyncio.Transport, ResponseHandler]:
        if kwargs.get("ssl"):  # TLS needs the loop's transport: stamps come from data_received
            return await super()._wrap_create_connection(*args, addr_infos=addr_infos, req=req, timeout=timeout,
                                                         client_error=client_error, **kwargs)
        try:
            async with asyncio.timeout(timeout.sock_connect):
                sock = await aiohappyeyeballs.start_connection(
                    addr_infos=addr_infos, loop=self._loop,
                    # the connector's own settings, as aiohttp passes them (absent in older aiohttp)
                    local_addr_infos=getattr(self, "_local_addr_infos", None),
                    happy_eyeballs_delay=getattr(self, "_happy_eyeballs_delay", None),
                    interleave=getattr(self, "_interleave", None))
        except OSError as exc:
            if exc.errno is None and isinstance(exc, TimeoutError):
                raise
            raise client_error(req.connection_key, exc) from exc
        protocol = args[0]()
        return _SendStampedTransport(self._loop, sock, protocol), protocol


def session_factory(max_connections: int, fresh: bool = False,
                    stamped_sends: bool = False) -> Callable[[], aiohttp.ClientSession]:
    """Makes our aiohttp sessions. `fresh`: every request on a new connection, closed after
    its response (no pool); else a pool of up to `max_connections` kept 60 s.
    `stamped_sends`: every connection's transport stamps its writes (plain TCP on the
    kernel-stamped transport), so no trace hook is needed for when a request went out."""

    def make() -> aiohttp.ClientSession:
        kind = _StampingConnector if stamped_transport_supported() else _HoldingConnector
        pooling: dict[str, Any] = {"force_close": True} if fresh else {"keepalive_timeout": 60.0}
        connector = kind(limit=max_connections, limit_per_host=0, **pooling)
        # aiohttp has no public hook for the connection protocol: swap its factory
        cast(Any, connector)._factory = functools.partial(StampingProtocol, loop=connector._loop)
        if stamped_sends and kind is _StampingConnector:
            return aiohttp.ClientSession(connector=connector)
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(_on_sent)
        trace.on_request_chunk_sent.append(_on_sent)
        return aiohttp.ClientSession(connector=connector, trace_configs=[trace])

    return make


def stamp_log(aio: Any) -> tuple[Any, list[tuple[float, int]] | None]:
    """The body reader of aiohttp response `aio` and its arrival stamps, when it came over
    one of our sessions' stamping connections; (None, None) otherwise."""
    protocol = getattr(getattr(aio, "connection", None), "protocol", None)
    if not isinstance(protocol, StampingProtocol) or protocol.stamp_payload is not aio.content:
        return None, None
    return aio.content, protocol.stamps


def split_by_arrival(stamps: list[tuple[float, int]], start: int, data: bytes) -> list[tuple[float, bytes]]:
    """Cut `data` (body bytes start..start+len) where one socket read ended and the next began."""
    end = start + len(data)
    i = bisect_left(stamps, start + 1, key=lambda s: s[1])
    pieces = []
    pos = start
    while pos < end:
        if i >= len(stamps):  # not stamped (should not happen): the read time is next best
            pieces.append((time.perf_counter(), data[pos - start:]))
            break
        t, total = stamps[i]
        cut = min(total, end)
        pieces.append((t, data[pos - start:cut - start]))
        pos = cut
        i += 1
    return pieces


async def stamped_reads(content: Any, stamps: list[tuple[float, int]]) -> AsyncIterator[tuple[float, bytes]]:
    """(arrival, bytes) pieces of an aiohttp body reader `content` with its stamp log."""
    consumed = 0
    try:
        while True:
            # Straight from aiohttp's buffer: bridge layers cost more per chunk than parsing it.
            data = await content.readany()
            if not data:
                return
            for item in split_by_arrival(stamps, consumed, data):
                yield item
            consumed += len(data)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
        raise ClientError("stream_dropped", describe_aio(exc)) from None


class AioStreamResponse:
    """A streamed response read straight from our aiohttp session (the direct path)."""

    def __init__(self, response: aiohttp.ClientResponse, sent_at: float | None, reused: bool = False) -> None:
        self._aio = response
        self.sent_at = sent_at
        self.reconnected = False
        self.reused_connection = reused  # sent on a pooled keep-alive connection, not a new one
        self.status = response.status
        headers = response.headers
        self.server_request_id = headers.get("x-request-id")
        self.content_type = headers.get("content-type", "")
        self._content, self._stamps = stamp_log(response)
        self._feeder: Feeder | None = None

    def header(self, name: str) -> str | None:
        return self._aio.headers.get(name)

    def start_feeding(self, feed: Feed, whole_chunk: ChunkFeed | None = None) -> asyncio.Future[None] | None:
        content, stamps = self._content, self._stamps
        protocol = getattr(self._aio.connection, "protocol", None)
        if content is None or stamps is None or not isinstance(protocol, StampingProtocol):
            return None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        feeder = self._feeder = Feeder(protocol, content, feed, done, whole_chunk)
        if type(content) is aiohttp.StreamReader:
            content.__class__ = DirectReader  # same slots: its later bytes go to the feeder
        try:  # what arrived before now, each piece with its own read's stamp
            buffered = content.read_nowait(-1)
            for t, piece in split_by_arrival(stamps, 0, buffered) if buffered else ():
                feed(t, piece)
        except Exception as exc:
            feeder.end(exc)
            return done
        if content.is_eof():
            feeder.end(None)
        elif content.exception() is not None:
            feeder.end(content.exception())
        else:
            protocol.sink = feeder
        return done

    async def reads(self) -> AsyncIterator[tuple[float, bytes]]:
        if self._stamps is not None and self._content is not None:
            async for item in stamped_reads(self._content, self._stamps):
                yield item
            return
        try:
            async for data in self._aio.content.iter_any():
                yield time.perf_counter(), data
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
            raise ClientError("stream_dropped", describe_aio(exc)) from None

    async def aclose(self) -> None:
        aio = self._aio
        feeder = self._feeder
        if feeder is not None:
            if feeder.protocol.sink is feeder:
                feeder.protocol.sink = None
            if feeder.done.done() and not feeder.done.cancelled():
                feeder.done.exception()  # retrieved: no "never retrieved" log after a cancel
        if aio.content.at_eof():
            aio.release()  # read to its end: the connection goes back to the pool
        else:
            aio.close()  # cut short: the connection cannot be reused
