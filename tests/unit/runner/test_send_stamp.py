"""When a request counts as sent: the moment its last byte went to the kernel, also for a
body larger than the socket takes at once, against a real loopback server that is slow to
read it (TTFT starts there, so the body's write is not inside it)."""

from __future__ import annotations

import socket
import threading
import time

import orjson
import pytest

from bench.runner.client import ClientConfig, StreamClient
from bench.runner.streamapi import SendLog
from bench.sockstamp import stamped_transport_supported

pytestmark = pytest.mark.skipif(not stamped_transport_supported(), reason="the stamped transport is Linux-only")

EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s"
          % (len(EVENT), EVENT))


class SlowReader:
    """One connection, one request: waits `delay_s` before reading, then reads the request
    in 64 KiB reads, noting when the read that brought its last byte began, and answers."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.first_read_began = 0.0
        self.last_read_began = 0.0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            time.sleep(self.delay_s)
            data = bytearray()
            while b"\r\n\r\n" not in data or len(data) < self._expected(data):
                began = time.perf_counter()
                self.first_read_began = self.first_read_began or began
                piece = conn.recv(64 * 1024)
                if not piece:
                    return
                self.last_read_began = began
                data += piece
            conn.sendall(ANSWER)

    @staticmethod
    def _expected(data: bytearray) -> int:
        head, _, _ = bytes(data).partition(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.lower().split(b"\r\n")
                      if line.startswith(b"content-length:"))
        return len(head) + 4 + length

    def close(self) -> None:
        self._thread.join(10)
        self._listener.close()


async def _send(body: bytes, delay_s: float) -> tuple[SendLog, float | None, float, SlowReader]:
    server = SlowReader(delay_s)
    client = StreamClient(ClientConfig(f"http://127.0.0.1:{server.port}/v1", None, 2.0, 4))
    log = SendLog()
    try:
        before = time.perf_counter()
        response = await client.open_stream("/chat/completions", body, log)
        assert b"".join([data async for _, data in response.reads()]) == EVENT
        await response.aclose()
    finally:
        await client.aclose()
        server.close()
    return log, response.sent_at, before, server


async def test_a_large_body_is_sent_when_its_last_byte_went_out_not_when_its_write_began():
    padding = "x" * (32 << 20)  # more than both sockets' buffers: the server must read first
    body = orjson.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": padding}]})
    log, sent_at, before, server = await _send(body, delay_s=0.3)
    assert log.sent_at is not None and sent_at == log.sent_at
    # the last piece went out after the server had made room for it by reading ...
    assert log.sent_at > server.first_read_began > before + 0.3
    # ... and no later than the read that took the last byte began (tolerance: a busy loop)
    assert log.sent_at < server.last_read_began + 0.05


async def test_a_small_body_is_sent_at_its_write_even_if_the_server_reads_it_late():
    log, sent_at, before, server = await _send(orjson.dumps({"model": "m", "stream": True}), delay_s=0.3)
    assert log.sent_at is not None and sent_at == log.sent_at
    assert before <= log.sent_at < before + 0.1 < server.first_read_began  # the kernel took it whole
