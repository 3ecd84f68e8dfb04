"""A paced OpenAI-style SSE server: one event per TCP segment, each stream at a set rate.

One process, raw asyncio protocol (uvloop when installed), TCP_NODELAY. Every POST gets
a chunked `text/event-stream` answer of `max_tokens` content events; each event is one
`transport.write` (one chunked-encoding frame, one TCP segment), so a client pays a
socket read per token, as with a real server. Streams are paced by one timer wheel (a
callback per `TICK_S`), not a task per stream: stream k writes its events `1 / rate`
apart from a random phase, so reads are spread over time as from many independent
sequences. The last event carries `finish_reason`, then a usage event and `[DONE]`.

Every content event's CLOCK_MONOTONIC time (`time.monotonic()`, taken just before its
write; the same clock as `time.perf_counter()` on Linux) is kept per request, under the
id sent in the `x-request-id` header. `GET /pacing/counters` answers JSON counters (content
events written = tokens generated, requests, streams active now); `POST /pacing/dump`
writes every request's stamps to the server's `--stamps` file (pickle of
{request id: array('d')}) and answers the counters.

    python benchmarks/_paced_server.py --rate 20 --stamps FILE [--port 0] [--cpu N]
    # prints "ready PORT" on stdout

`start_paced_server()` runs it in a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import pickle
import random
import re
import socket
import subprocess
import sys
import time
from array import array
from typing import Any

__all__ = ["TICK_S", "start_paced_server"]

TICK_S = 0.001
_MAX_TOKENS = re.compile(rb'"max(?:_completion)?_tokens"\s*:\s*(\d+)')
_HEAD = b'{"id":"chatcmpl-p","object":"chat.completion.chunk","created":1,"model":"pacing","choices":['
_TOKEN = [_HEAD + b'{"index":0,"delta":{"content":" w%d"},"finish_reason":null}]}' % i for i in range(100)]
_LAST = _HEAD + b'{"index":0,"delta":{"content":" end"},"finish_reason":"length"}]}'


def _frame(payload: bytes) -> bytes:
    """One chunked-encoding frame holding one SSE event."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


_FRAMES = [_frame(t) for t in _TOKEN]
_LAST_FRAME = _frame(_LAST)
_DONE = _frame(b"[DONE]") + b"0\r\n\r\n"
_MODELS = b'{"object":"list","data":[{"id":"pacing","object":"model"}]}'


def _response(status: str, body: bytes, ctype: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
            % (status.encode(), ctype, len(body))) + body


class _Stream:
    __slots__ = ("due", "left", "rid", "stamps", "tokens", "transport")

    def __init__(self, transport: Any, rid: str, tokens: int, due: float) -> None:
        self.transport = transport
        self.rid = rid
        self.tokens = tokens
        self.left = tokens
        self.due = due
        self.stamps = array("d")


class Pacer:
    """The timer wheel: slot i holds the streams due in tick i; one callback per tick."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rate: float, stamps_path: str | None) -> None:
        self.loop = loop
        self.interval = 1.0 / rate
        self.stamps_path = stamps_path
        self.wheel: dict[int, list[_Stream]] = {}
        self.done: dict[str, array[float]] = {}
        self.events = 0
        self.requests = 0
        self.active = 0
        self._next_tick = math.floor(time.monotonic() / TICK_S)
        self._rng = random.Random(1)
        self._arm()

    def _arm(self) -> None:
        # loop.time() is CLOCK_MONOTONIC too (asyncio and uvloop): the tick boundaries line up
        self.loop.call_at(self._next_tick * TICK_S, self._tick)

    def start(self, transport: Any, tokens: int) -> None:
        self.requests += 1
        self.active += 1
        stream = _Stream(transport, f"p{self.requests}", max(tokens, 1), 0.0)
        transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                        b"x-request-id: %s\r\n\r\n" % stream.rid.encode())
        stream.due = time.monotonic() + self._rng.random() * self.interval  # the first token: a random phase
        self._place(stream)

    def _place(self, stream: _Stream) -> None:
        tick = max(math.ceil(stream.due / TICK_S), self._next_tick)
        slot = self.wheel.get(tick)
        if slot is None:
            self.wheel[tick] = [stream]
        else:
            slot.append(stream)

    def _tick(self) -> None:
        now_tick = math.floor(time.monotonic() / TICK_S)
        mono = time.monotonic
        while self._next_tick <= now_tick:  # catch up on ticks a busy loop missed
            slot = self.wheel.pop(self._next_tick, None)
            self._next_tick += 1
            for stream in slot or ():
                transport = stream.transport
                if transport.is_closing():
                    self._end(stream)
                    continue
                stream.left -= 1
                frame = _FRAMES[stream.left % 100] if stream.left else _LAST_FRAME
                stream.stamps.append(mono())
                transport.write(frame)
                self.events += 1
                if stream.left:
                    stream.due += self.interval
                    self._place(stream)
                else:
                    usage = _frame(b'{"id":"chatcmpl-p","object":"chat.completion.chunk","created":1,'
                                   b'"model":"pacing","choices":[],"usage":{"prompt_tokens":8,'
                                   b'"completion_tokens":%d,"total_tokens":%d}}' % (stream.tokens, stream.tokens + 8))
                    transport.write(usage + _DONE)
                    self._end(stream)
        self._arm()

    def _end(self, stream: _Stream) -> None:
        self.active -= 1
        self.done[stream.rid] = stream.stamps

    def counters(self) -> bytes:
        return json.dumps({"events": self.events, "requests": self.requests, "active": self.active,
                           "finished": len(self.done)}).encode()

    def dump(self) -> bytes:
        if self.stamps_path:
            with open(self.stamps_path, "wb") as f:
                pickle.dump(self.done, f, protocol=pickle.HIGHEST_PROTOCOL)
        return self.counters()


class _Http(asyncio.Protocol):
    pacer: Pacer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            i = head.lower().find(b"content-length:")
            length = int(head[i + 15:].split(b"\r\n", 1)[0]) if i >= 0 else 0
            if len(buf) < end + 4 + length:
                break
            body = buf[end + 4:end + 4 + length]
            buf = buf[end + 4 + length:]
            self._request(head, body)
        self.buf = buf

    def _request(self, head: bytes, body: bytes) -> None:
        write = self.transport.write  # type: ignore[attr-defined]
        line = head.split(b"\r\n", 1)[0]
        if line.startswith(b"GET /pacing/counters"):
            write(_response("200 OK", self.pacer.counters()))
        elif line.startswith(b"POST /pacing/dump"):
            write(_response("200 OK", self.pacer.dump()))
        elif line.startswith(b"GET"):
            write(_response("200 OK", _MODELS))
        else:
            m = _MAX_TOKENS.search(body)
            self.pacer.start(self.transport, int(m.group(1)) if m else 16)


async def _serve(port: int, rate: float, stamps: str | None) -> None:
    loop = asyncio.get_running_loop()
    _Http.pacer = Pacer(loop, rate, stamps)
    server = await loop.create_server(_Http, "127.0.0.1", port, backlog=8192)
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


def start_paced_server(rate: float, stamps: str, cpu: int | None = None) -> tuple[subprocess.Popen[str], str]:
    """(process, base_url of its /v1) of a paced server in a child process."""
    args = [sys.executable, __file__, "--rate", str(rate), "--stamps", stamps]
    if cpu is not None:
        args += ["--cpu", str(cpu)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != "ready":
        proc.kill()
        raise RuntimeError("paced server did not start")
    return proc, f"http://127.0.0.1:{line[1]}/v1"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=20.0, help="tokens/s per stream")
    parser.add_argument("--stamps", default=None, help="file POST /pacing/dump writes the write stamps to")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this core")
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(_serve(args.port, args.rate, args.stamps))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
