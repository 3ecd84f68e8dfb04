"""What the runner needs from an HTTP client, and nothing of how one is built.

`StreamOpener.open_stream` posts a request and returns a `StreamResponse` whose body is read
as (arrival perf_counter seconds, bytes) pieces; every failure is a `ClientError` with an
`error_kind`. `bench.runner.client.StreamClient` is the real one (aiohttp, the openai SDK
behind `bench.runner.sdk`); tests drive the runner with an in-process fake.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ChunkFeed", "ClientConfig", "ClientError", "Feed", "SendLog", "StreamOpener", "StreamResponse", "sleep_until"]


class ClientError(Exception):
    """A request failed before or while its body was read; `kind` is the error_kind."""

    def __init__(self, kind: str, message: str, http_status: int | None = None,
                 retry_after_s: float | None = None, server_request_id: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.server_request_id = server_request_id
        self.reconnected = False  # failed on the fresh connection after a stale pooled one


@dataclass(frozen=True, slots=True)
class ClientConfig:
    base_url: str
    api_key: str | None
    connect_timeout_s: float
    max_connections: int

    def __repr__(self) -> str:  # never show the key
        return (f"ClientConfig(base_url={self.base_url!r}, api_key={'***' if self.api_key else None}, "
                f"connect_timeout_s={self.connect_timeout_s}, max_connections={self.max_connections})")


@dataclass(slots=True)
class SendLog:
    """What happened to one request on its way out, filled in by `open_stream` as it goes,
    so that a caller whose wait is cut short (a TTFT timeout before any response header,
    as on a saturated server that has not read the request yet) still knows when it went out.

    `not_before` (perf_counter seconds): once a connection is ready (pooled or new), the
    request is held until then before its first byte is written, so it never reaches the wire
    before its scheduled time however early it was handed over. `sent_at`: when its last byte
    was written (the retry's, after a stale pooled connection), None while nothing was.
    `held_s`: time spent held.
    """

    not_before: float = 0.0
    sent_at: float | None = None
    held_s: float = 0.0


_SPIN_S = 0.0015  # sleep until this close to the target, then yield: asyncio rounds timers to 1 ms


async def sleep_until(target: float) -> None:
    """Return at perf_counter time `target` (seconds), to the microsecond: sleep until 1.5 ms
    before it, then yield to the loop until it passes (a send time, a `not_before` hold)."""
    delay = target - time.perf_counter()
    if delay > _SPIN_S:
        await asyncio.sleep(delay - _SPIN_S)
    while time.perf_counter() < target:  # noqa: ASYNC110 - a spin: the last 1.5 ms to the microsecond
        await asyncio.sleep(0)


# Called with (arrival perf_counter seconds, bytes) for each read of a response body.
Feed = Callable[[float, bytes], None]
# Offered a read that is exactly one whole HTTP chunk (arrival, the read's raw bytes, and where
# the chunk's data begins and ends in them): True when it took the read, False (nothing
# taken) to have it decoded and fed as usual.
ChunkFeed = Callable[[float, bytes, int, int], bool]


class StreamResponse(Protocol):
    """An open streamed response: status, headers, and the raw body reads with arrival stamps.

    `sent_at`: perf_counter seconds the request's last byte was written (None: unknown).
    `reconnected`: sent again on a new connection after a stale pooled one.
    """

    status: int
    sent_at: float | None
    reconnected: bool
    reused_connection: bool
    server_request_id: str | None
    content_type: str

    def header(self, name: str) -> str | None:
        """A response header's value (case-insensitive name), None when absent."""
        ...

    def start_feeding(self, feed: Feed, whole_chunk: ChunkFeed | None = None) -> asyncio.Future[None] | None:
        """Call `feed` for every read, from the socket callback (no task wake-up per read).
        A response that decodes a chunked body itself first offers `whole_chunk` each read
        that is one whole chunk (others may ignore it).

        Returns a future resolved at the end of the body (or failed with the error, a
        ClientError for a broken connection), or None when this response can only be read
        with `reads()`.
        """
        ...

    def reads(self) -> AsyncIterator[tuple[float, bytes]]:
        """Yield (arrival perf_counter, bytes), split where the bytes arrived in separate reads;
        raise ClientError (stream_dropped, read_timeout) when the body breaks."""
        ...

    async def aclose(self) -> None:
        """Release the connection (to the pool when the body was read to its end)."""
        ...


class StreamOpener(Protocol):
    """Opens streamed POSTs: what the runner sends through."""

    async def open_stream(self, path: str, body: bytes, log: SendLog | None = None) -> StreamResponse:
        """POST `body` (JSON bytes) to `path`; raise ClientError on any failure to start."""
        ...
