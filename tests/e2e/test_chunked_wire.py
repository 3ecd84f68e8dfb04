"""Response framing through the real client: a loopback server writes hand-built HTTP/1.1
responses in scripted pieces (each its own TCP segment, so its own read), and `Attempt`
reads them through `StreamClient` as `bench run` does. Chunked bodies are decoded by bench's
own decoder; Content-Length and compressed bodies by aiohttp's parser."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import socket

import orjson

from bench.runner.attempt import Attempt
from bench.runner.client import ClientConfig, StreamClient
from bench.runner.recorder import StreamRecorder
from bench.scenario.schema import Timeouts

TEXTS = ["h\u00e9", "\u20ac\U0001f600", " end"]


def _events() -> bytes:
    chunks = [{"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in TEXTS]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


PAYLOAD = _events()
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
CHUNKED = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"


def _chunked(payload: bytes, size: int, trailers: bytes = b"") -> bytes:
    frames = [b"%x;i=%d\r\n%s\r\n" % (len(payload[i:i + size]), i, payload[i:i + size])
              for i in range(0, len(payload), size)]
    return b"".join(frames) + b"0\r\n" + trailers + b"\r\n"


def _pieces(data: bytes, step: int) -> list[bytes]:
    return [data[i:i + step] for i in range(0, len(data), step)]


class ScriptedServer:
    """Answers each request with the next script: a list of writes, 3 ms apart; None as a
    write closes the connection there. Counts connections."""

    def __init__(self, scripts: list[list[bytes | None]]) -> None:
        self.scripts = list(scripts)
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        if self._handlers:  # each ends once the client closes its connection
            await asyncio.wait(self._handlers, timeout=5.0)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while self.scripts:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.lower().split(b"\r\n")
                              if line.startswith(b"content-length:"))
                await reader.readexactly(length)
                for piece in self.scripts.pop(0):
                    if piece is None:
                        writer.transport.abort()
                        return
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.003)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


async def _run(scripts: list[list[bytes | None]]) -> tuple[list[Attempt], int]:
    async with ScriptedServer(scripts) as server:
        client = StreamClient(ClientConfig(f"http://127.0.0.1:{server.port}/v1", None, 2.0, 4))
        attempts = []
        try:
            for _ in scripts:
                attempt = Attempt(0.0, Timeouts(ttft_s=5.0, idle_s=5.0, total_s=10.0), keep_text=True)
                await attempt.run(client, "/chat/completions", orjson.dumps({"model": "m", "stream": True}))
                attempts.append(attempt)
        finally:
            await client.aclose()
        return attempts, server.connections


def _assert_ok(attempt: Attempt) -> None:
    assert attempt.error_kind is None, attempt.error_message
    assert "".join(attempt.recorder.text_parts) == "".join(TEXTS)
    assert attempt.recorder.done_seen and attempt.recorder.finish_reason() == "stop"
    assert attempt.recorder.chunks.kind.count(1) == len(TEXTS)


async def test_chunked_body_cut_anywhere_between_reads_decodes_the_same():
    body = _chunked(PAYLOAD, 37, b"X-Trailer: yes\r\n")
    scripts: list[list[bytes | None]] = [[CHUNKED + body]]
    scripts += [[CHUNKED, *_pieces(body, step)] for step in (1, 2, 3, 5, 11, 64)]
    scripts.append([(CHUNKED + body)[:len(CHUNKED) + 9], (CHUNKED + body)[len(CHUNKED) + 9:]])
    attempts, connections = await _run(scripts)
    for attempt in attempts:
        _assert_ok(attempt)
    assert connections == 1  # every body read to its end: the connection went back to the pool


async def test_truncated_or_broken_chunked_body_is_an_error_and_the_next_request_reconnects():
    body = _chunked(PAYLOAD, 50)
    whole = CHUNKED + body
    cut_mid_chunk = whole[:len(CHUNKED) + 70]
    cut_before_terminator = whole[:-5]
    broken = CHUNKED + b"zz\r\n" + body
    # the head alone first: the body reader is being fed from the socket callback when it breaks
    attempts, connections = await _run([[cut_mid_chunk, None], [cut_before_terminator, None], [broken],
                                        [CHUNKED, body[:70], None], [CHUNKED, b"zz\r\n" + body],
                                        [CHUNKED, *_pieces(body, 7)]])
    for attempt in attempts[:5]:
        assert attempt.status == "error" and attempt.error_kind == "stream_dropped", attempt.error_message
    for attempt in (attempts[2], attempts[4]):
        assert "malformed chunked body" in (attempt.error_message or "")
    _assert_ok(attempts[5])
    assert connections == 6


async def test_bytes_after_the_body_end_its_connection():
    attempts, connections = await _run([[CHUNKED + _chunked(PAYLOAD, 40) + b"junk"], [CHUNKED + _chunked(PAYLOAD, 40)]])
    for attempt in attempts:
        _assert_ok(attempt)
    assert connections == 2


async def test_content_length_and_compressed_bodies_take_aiohttps_parser():
    length = HEAD + b"Content-Length: %d\r\n\r\n" % len(PAYLOAD)
    packed = gzip.compress(PAYLOAD)
    gzipped = HEAD + b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(packed, 30)
    attempts, connections = await _run([[length, *_pieces(PAYLOAD, 9)], _pieces(gzipped, 13), [length + PAYLOAD]])
    for attempt in attempts:
        _assert_ok(attempt)
    assert connections == 1


async def test_chunked_error_bodies_reach_the_error_paths():
    error = b'{"error": {"message": "the model is overloaded", "code": 503}}'
    status = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    json_200 = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    attempts, connections = await _run([[status, *_pieces(_chunked(error, 10), 6)],
                                        [json_200 + _chunked(error, 25)], [CHUNKED + _chunked(PAYLOAD, 64)]])
    assert attempts[0].http_status == 503 and attempts[0].status == "error"
    assert "the model is overloaded" in (attempts[0].error_message or "")
    assert attempts[1].error_kind == "server_error_body"
    assert "the model is overloaded" in (attempts[1].error_message or "")
    _assert_ok(attempts[2])
    assert connections == 1


async def test_reads_that_are_one_whole_chunk_each_are_taken_whole_and_read_the_same(monkeypatch):
    """One event per chunk per write, as a real server sends tokens: after the template is
    learnt the connection hands each such read to the recorder whole; the record is still
    what the stream says, escaped texts and the finish included."""
    texts = [" a", " caf\u00e9", 'q"uote', " \U0001f600", " b", " c"]
    events = [{"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in texts]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
    frames = [b"%x\r\n%s\r\n" % (len(e), e) for e in
              [b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\n\n" for e in events]
              + [b"data: [DONE]\n\n"]]
    taken = []
    take = StreamRecorder.take

    def spy(self: StreamRecorder, t_abs: float, data: bytes, start: int, stop: int) -> bool:
        took = take(self, t_abs, data, start, stop)
        if start:  # offered a whole chunk by the connection (a whole decoded read starts at 0)
            taken.append(took)
        return took

    monkeypatch.setattr(StreamRecorder, "take", spy)
    attempts, _ = await _run([[CHUNKED, *frames, b"0\r\n\r\n"]])
    recorder = attempts[0].recorder
    assert attempts[0].error_kind is None, attempts[0].error_message
    assert recorder.text_parts == texts and recorder.finish_reason() == "length" and recorder.done_seen
    assert list(recorder.chunks.kind) == [1] * len(texts) + [4]
    times = list(recorder.chunks.t)
    assert all(b - a >= 0.002 for a, b in itertools.pairwise(times))  # each its own read, 3 ms apart
    assert taken.count(True) == 3  # " \U0001f600", " b" and " c": after the two learnt from, not the quote
