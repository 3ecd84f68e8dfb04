"""An in-process stream source for runner tests without sockets.

`FakeStreams` satisfies `bench.runner.streamapi.StreamOpener`: each request gets a `Script`
(chosen from its JSON body), which says when the response starts and which bytes arrive at
which times. Like the real client it holds a request until `SendLog.not_before` and records
when it went out. Every piece is stamped with its scripted time (sent time + `at_s`), so
the figures a test reads back are exact, whatever the event loop's own delays; the piece is
delivered at (about) that time, so the runner's deadlines see real time pass.

Both of the real client's reading paths are here: `feeding=True` delivers pieces from loop
callbacks through `start_feeding` (as on our aiohttp connections), `feeding=False` through
the `reads()` iterator (as on the SDK's public path).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.runner.streamapi import ChunkFeed, ClientError, Feed, SendLog, sleep_until


def sse(obj: Any) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else orjson.dumps(obj)) + b"\n\n"


def delta(content: str | None = None, finish: str | None = None, role: bool = False) -> bytes:
    d: dict[str, Any] = {"role": "assistant"} if role else {}
    if content is not None:
        d["content"] = content
    return sse({"id": "c", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": d, "finish_reason": finish}]})


def usage(prompt: int, completion: int) -> bytes:
    return sse({"id": "c", "object": "chat.completion.chunk", "choices": [],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}})


DONE = b"data: [DONE]\n\n"


def healthy(tokens: int, first_s: float, gap_s: float) -> list[tuple[float, bytes]]:
    """A complete chat stream: role, `tokens` content chunks (the first at `first_s` after the
    send, then one every `gap_s`), finish, usage and [DONE] with the last token."""
    pieces = [(first_s, delta(role=True) + delta("t0"))]
    pieces += [(first_s + i * gap_s, delta(f"t{i}")) for i in range(1, tokens)]
    last = first_s + (tokens - 1) * gap_s
    pieces.append((last, delta(finish="stop") + usage(5, tokens) + DONE))
    return pieces


@dataclass
class Script:
    """One response. `headers_s`: when open_stream returns, after the send (or raises `error`).
    `pieces`: (seconds after the send, bytes). `end`: after the last piece the body ends
    cleanly (None), breaks (a ClientError), or stays open (`"open"`, until closed)."""

    pieces: list[tuple[float, bytes]] = field(default_factory=list)
    headers_s: float = 0.0
    error: ClientError | None = None
    status: int = 200
    content_type: str = "text/event-stream"
    end: ClientError | str | None = None


@dataclass
class Opened:
    body: dict[str, Any]
    not_before: float
    sent_at: float


class FakeStreams:
    """The stream source; `script(body)` gives each request its Script."""

    def __init__(self, script: Callable[[dict[str, Any]], Script], feeding: bool = True) -> None:
        self._script = script
        self.feeding = feeding
        self.opened: list[Opened] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.closed = 0

    async def open_stream(self, path: str, body: bytes, log: SendLog | None = None) -> FakeResponse:
        request = orjson.loads(body)
        script = self._script(request)
        not_before = log.not_before if log is not None else 0.0
        now = time.perf_counter()
        if now < not_before:  # the real client's hold: never on the wire before its time
            await sleep_until(not_before)
        sent_at = max(time.perf_counter(), not_before)
        if log is not None:
            log.held_s += max(0.0, sent_at - now)
            log.sent_at = sent_at
        self.opened.append(Opened(request, not_before, sent_at))
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await _sleep_until(sent_at + script.headers_s)
        except BaseException:
            self.in_flight -= 1
            raise
        if script.error is not None:
            self.in_flight -= 1
            raise script.error
        return FakeResponse(self, script, sent_at)


class FakeResponse:
    def __init__(self, source: FakeStreams, script: Script, sent_at: float) -> None:
        self._source = source
        self._script = script
        self._sent_at = sent_at
        self.status = script.status
        self.sent_at: float | None = sent_at
        self.reconnected = False
        self.reused_connection = False
        self.server_request_id: str | None = "fake-1"
        self.content_type = script.content_type
        self._handles: list[asyncio.TimerHandle] = []
        self._closed = False

    def header(self, name: str) -> str | None:
        return None

    def start_feeding(self, feed: Feed, whole_chunk: ChunkFeed | None = None) -> asyncio.Future[None] | None:
        if not self._source.feeding:
            return None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        offset = loop.time() - time.perf_counter()  # perf_counter -> loop clock
        last = self._sent_at
        # Timers due at the same moment run in any order: each piece is due 0.1 us after the
        # one before it (its stamp stays the scripted one), the end after the last.
        for k, (at_s, data) in enumerate(self._script.pieces):
            stamp = self._sent_at + at_s
            last = max(last, stamp)
            self._handles.append(loop.call_at(stamp + offset + k * 1e-7, self._deliver, feed, done, stamp, data))
        self._handles.append(loop.call_at(last + 1e-6 + offset, self._end, done))
        return done

    def _deliver(self, feed: Feed, done: asyncio.Future[None], stamp: float, data: bytes) -> None:
        if done.done():
            return
        try:
            feed(stamp, data)
        except Exception as exc:  # as the real feeder: the error ends the body
            done.set_exception(exc)

    def _end(self, done: asyncio.Future[None]) -> None:
        end = self._script.end
        if done.done() or end == "open":
            return
        if isinstance(end, ClientError):
            done.set_exception(end)
        else:
            done.set_result(None)

    async def reads(self) -> AsyncIterator[tuple[float, bytes]]:
        for at_s, data in self._script.pieces:
            stamp = self._sent_at + at_s
            await _sleep_until(stamp)
            yield stamp, data
        end = self._script.end
        if isinstance(end, ClientError):
            raise end
        if end == "open":
            await asyncio.sleep(3600)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for handle in self._handles:
            handle.cancel()
        self._source.in_flight -= 1
        self._source.closed += 1


async def _sleep_until(target: float) -> None:
    delay = target - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
