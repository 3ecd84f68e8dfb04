"""The connection protocol of our aiohttp sessions: stamped reads, and bodies read without a task.

`StampingProtocol` is aiohttp's `ResponseHandler` with three changes. Every socket read is
stamped (the kernel's receive time on `bench.sockstamp`'s transport, else the time of
`data_received`). A chunked, unencoded response body is decoded here (`bench.runner.chunked`)
instead of by aiohttp's HTTP parser, which then only parses response heads: per read that
saves aiohttp's protocol and parser call chain into the body reader (about a seventh of the
client's CPU in a profile at 1,024 paced streams, one token per read). And once a `Feeder` is attached, each read's body bytes go
straight to its `feed` from the socket callback (no buffering, no task wake-up per read).
Bodies aiohttp must decode (Content-Length, compressed, read-until-close) keep its parser,
with `DirectReader` handing them to the feeder. All of this relies on aiohttp's private
protocol and reader attributes (`_parser`, `_payload`, `_protocol`, ...): to recheck on
aiohttp upgrades (the wire tests exercise each path).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

from bench.runner.chunked import ChunkedBody, ChunkedError
from bench.runner.streamapi import ChunkFeed, ClientError, Feed
from bench.sockstamp import StampedTransport

__all__ = ["DirectReader", "Feeder", "StampingProtocol", "describe_aio"]

_NO_BODY = frozenset({204, 304})


class StampingProtocol(ResponseHandler):
    """aiohttp's connection protocol, stamping each socket read with its arrival time.

    On the kernel-stamped transport (`bench.sockstamp`, plain TCP on Linux) the stamp is
    the time the bytes reached the socket, whenever the loop gets to them; elsewhere (TLS)
    it is taken in `data_received`, before HTTP parsing and before any task runs. Each
    stamp is paired with the response body's byte count after that read (`stamps`, for the
    body reader `stamp_payload`) until a feeder takes the body (`sink`).
    """

    def __init__(self, loop: Any) -> None:
        super().__init__(loop)
        self.stamp_payload: Any = None
        self.stamps: list[tuple[float, int]] = []
        self.sink: Feeder | None = None
        self.chunked: ChunkedBody | None = None  # the body being decoded here, not by aiohttp
        self.body: Any = None  # its reader (aiohttp's StreamReader of the response)
        self._head_seen = b""  # the last bytes of a response head not yet ended
        self._message: Any = None  # the head aiohttp parsed last
        self.requests = 0  # requests sent on this connection (handed out by the connector)

    def feed_data(self, data: Any, size: int = 0) -> None:
        """aiohttp's parser hands each response (head, body reader) here."""
        self._message = data[0]
        self._head_seen = b""
        super().feed_data(data, size)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        t = transport.rx_time if isinstance(transport, StampedTransport) else time.perf_counter()
        chunked = self.chunked
        if chunked is None:
            data = self._aiohttp_received(t, data)
            chunked = self.chunked
            if chunked is None or not data:
                return
        # A chunked body decoded here; inline, as this runs on every read of a stream.
        sink = self.sink
        if sink is not None and sink.whole_chunk is not None and sink.payload is self.body:
            start = chunked.whole_chunk(data)
            if start and sink.whole_chunk(t, data, start, len(data) - 2):  # one token's event, taken whole
                return
        try:
            body = chunked.feed(data)
        except ChunkedError as exc:
            self._chunked_failed(exc)
            return
        if body:
            if sink is not None and sink.payload is self.body:
                try:
                    sink.feed(t, body)
                except Exception as exc:  # handed to the waiting task, raised there
                    sink.end(exc)
            else:  # no feeder yet: into the body reader, stamped
                payload = self.body
                payload.feed_data(body)
                self.stamps.append((t, payload.total_bytes))
        if chunked.done:
            self._chunked_end(chunked.rest)

    def _aiohttp_received(self, t: float, data: bytes) -> bytes:
        """A read outside a body decoded here: a response head (parsed by aiohttp) or a body
        aiohttp decodes. Returns the bytes after a head that begins a chunked body decoded
        here (`chunked` set), else b""."""
        before = self._payload
        if not self._awaiting_head():
            super().data_received(data)
        else:
            data = self._head_received(data)
            if self.chunked is not None:
                return data
            if data:
                super().data_received(data)
        payload = self._payload or before
        if payload is None:
            return b""
        sink = self.sink
        if sink is not None and payload is sink.payload:
            sink.pump(t)  # parsed here, in the socket callback: no task wake-up per read
            return b""
        if payload is not self.stamp_payload:
            self.stamp_payload = payload
            self.stamps = []
        self.stamps.append((t, payload.total_bytes))
        return b""

    def _awaiting_head(self) -> bool:
        payload = self._payload
        return (self._parser is not None and not self._upgraded and self._payload_parser is None
                and (payload is None or payload.is_eof()) and not self._read_timeout)

    def _head_received(self, data: bytes) -> bytes:
        """Let aiohttp parse a response head that ends in `data`; what follows it is returned
        (and decoded here from now on when it is a chunked body aiohttp need not decode)."""
        seen = self._head_seen
        at = (seen + data).find(b"\r\n\r\n") if seen else data.find(b"\r\n\r\n")
        if at < 0:
            self._head_seen = (seen + data)[-3:]
            return data
        self._head_seen = b""
        cut = at + 4 - len(seen)
        self._message = None
        ResponseHandler.data_received(self, data[:cut])
        if self.exception() is not None:
            return b""  # a broken head: aiohttp has failed the response and closed the connection
        message, payload = self._message, self._payload
        if (message is not None and message.chunked and message.compression is None and not message.upgrade
                and type(payload) is aiohttp.StreamReader and not payload.is_eof() and not self._skip_payload
                and message.code >= 200 and message.code not in _NO_BODY and self.transport is not None):
            self.chunked = ChunkedBody()
            self.body = payload
            self.stamp_payload = payload
            self.stamps = []
        return data[cut:]

    def _chunked_end(self, rest: bytes) -> None:
        payload = self.body
        self.chunked = self.body = None
        self._parser = None  # it saw only the head: the next request brings a new one
        if rest:  # bytes after the body's end: the connection is not reused
            self._should_close = True
            self._tail += rest
        sink = self.sink
        payload.feed_eof()  # the response releases its connection
        if sink is not None and sink.payload is payload:
            sink.end(None)

    def _chunked_failed(self, exc: ChunkedError) -> None:
        payload = self.body
        self.chunked = self.body = None
        self._parser = None
        error = aiohttp.ClientPayloadError(f"Response payload is not completed: malformed chunked body: {exc}")
        payload.set_exception(error)
        self._should_close = True
        if self.transport is not None:
            self.transport.close()
        sink = self.sink
        if sink is not None and sink.payload is payload:
            sink.end(error)

    def pause_reading(self) -> None:
        if self._parser is None and not self._upgraded:  # after a body decoded here: no parser to pause
            self._reading_paused = True
            self._pause_transport_reading()
            self._drop_timeout()
            return
        super().pause_reading()

    def connection_lost(self, exc: BaseException | None) -> None:
        sink = self.sink
        # mid-body, aiohttp's parser (which saw the head) fails the body reader: not completed
        super().connection_lost(exc)
        self.chunked = self.body = None
        if sink is not None:
            sink.lost()


class DirectReader(aiohttp.StreamReader):
    """aiohttp's body reader, handing the body straight to its attached `Feeder`.

    While a feeder is attached, the HTTP parser's body pieces go to `Feeder.pieces`
    instead of the read buffer, so a read costs no buffering, no `read_nowait` and no
    `resume_reading` round (together about a tenth of the client's CPU when every token is
    its own read, in a profile), and the chunk-boundary log that only `readchunk()` uses is
    not kept.
    Detached, it is aiohttp's reader. Same layout: `AioStreamResponse.start_feeding`
    switches a response's reader to it in place.
    """

    __slots__ = ()

    def feed_data(self, data: bytes, size: int = 0) -> bool:
        sink = self._protocol.sink  # type: ignore[attr-defined]
        if sink is None or sink.payload is not self:
            return super().feed_data(data, size)
        self.total_bytes += len(data)
        sink.pieces.append(data)
        return False

    def end_http_chunk_receiving(self) -> None:
        sink = self._protocol.sink  # type: ignore[attr-defined]
        if sink is None or sink.payload is not self:
            super().end_http_chunk_receiving()


class Feeder:
    """Hands each socket read of one response body to `feed(t, data)` from `data_received`.

    `done` resolves at the end of the body, or with the error that `feed` raised or that
    broke the connection (as a `ClientError("stream_dropped")`).
    """

    __slots__ = ("_again", "_busy", "done", "feed", "payload", "pieces", "protocol", "whole_chunk")

    def __init__(self, protocol: StampingProtocol, payload: Any, feed: Feed, done: asyncio.Future[None],
                 whole_chunk: ChunkFeed | None = None) -> None:
        self.protocol = protocol
        self.payload = payload
        self.feed = feed
        self.whole_chunk = whole_chunk  # offered whole-chunk reads of a body decoded in the protocol
        self.done = done
        self.pieces: list[bytes] = []
        self._busy = False
        self._again: float | None = None

    def pump(self, t: float) -> None:
        if self._busy:  # re-entered: draining the buffer resumed reading, which read more
            self._again = t
            return
        payload = self.payload
        self._busy = True
        try:
            while True:
                pieces = self.pieces
                if pieces:  # what the parser handed `DirectReader.feed_data` in this read
                    self.pieces = []
                    data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                else:
                    data = payload.read_nowait(-1)
                if data:
                    self.feed(t, data)
                if self._again is None:
                    break
                t, self._again = self._again, None
        except Exception as exc:  # handed to the waiting task, raised there
            self.end(exc)
            return
        finally:
            self._busy = False
        if payload.is_eof():
            self.end(None)

    def lost(self) -> None:
        if self.payload.exception() is None:
            self.pump(time.perf_counter())
        if not self.done.done():
            self.end(self.payload.exception() or ClientError("stream_dropped", "connection closed mid-body"))

    def end(self, exc: BaseException | None) -> None:
        if self.protocol.sink is self:
            self.protocol.sink = None
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(None)
            return
        if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError)):
            exc = ClientError("stream_dropped", describe_aio(exc))
        self.done.set_exception(exc)


def describe_aio(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
