"""Through the whole client (session, connector, protocol): a body read is stamped when its
bytes reached the socket (the kernel's stamp), not when a busy event loop got to them."""

from __future__ import annotations

import socket
import threading
import time

import orjson
import pytest

from bench.runner.client import ClientConfig, StreamClient
from bench.runner.streamapi import SendLog
from bench.sockstamp import stamped_transport_supported

pytestmark = pytest.mark.skipif(not stamped_transport_supported(), reason="kernel stamps are Linux-only")

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
EVENTS = [b'data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\n',
          b'data: {"choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"stop"}]}\n\n',
          b"data: [DONE]\n\n"]
BLOCK_S = 0.3


def _serve(listener: socket.socket, written: list[float]) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        conn.sendall(HEAD)
        time.sleep(0.05)  # the client is inside its blocking stretch by now
        for event in EVENTS:
            conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
            written.append(time.perf_counter())
            time.sleep(0.02)
        conn.sendall(b"0\r\n\r\n")
        written.append(time.perf_counter())


async def test_reads_are_stamped_at_arrival_while_the_loop_is_blocked():
    listener = socket.create_server(("127.0.0.1", 0))
    written: list[float] = []
    server = threading.Thread(target=_serve, args=(listener, written), daemon=True)
    server.start()
    client = StreamClient(ClientConfig(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", None, 2.0, 4))
    try:
        response = await client.open_stream("/chat/completions", orjson.dumps({"model": "m", "stream": True}),
                                            SendLog())
        time.sleep(BLOCK_S)  # noqa: ASYNC251 - the point: the loop is stuck while every event arrives
        unblocked = time.perf_counter()
        reads = [piece async for piece in response.reads()]
        await response.aclose()
    finally:
        await client.aclose()
        server.join(5)
        listener.close()
    assert b"".join(data for _, data in reads) == b"".join(EVENTS)
    assert len(written) == 4 and written[-1] < unblocked
    # the events and the body's end came while the loop was stuck, so one read took them:
    # stamped with the newest segment's arrival (the last write), not when the loop read it
    assert {t for t, _ in reads} == {reads[0][0]}
    assert written[-1] - 0.005 < reads[0][0] < written[-1] + 0.005 < unblocked - 0.1
