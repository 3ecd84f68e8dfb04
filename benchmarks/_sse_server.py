"""A minimal zero-latency OpenAI-style SSE server for client-ceiling benchmarks.

One process, one core, raw asyncio protocol (uvloop when installed): every POST gets a
precomputed `text/event-stream` response of `max_tokens` content chunks (a role chunk
first, a usage chunk and `[DONE]` last), written at once, keep-alive. Cheaper per chunk
than `bench sim`, so that the client is what saturates. `GET /counters` answers its
generation counter: {"requests": streamed answers served, "tokens": content chunks in them}.

    python benchmarks/_sse_server.py [--port 0]   # prints "ready PORT" on stdout

`start_server()` runs it in a child process and returns (process, base_url).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
from functools import lru_cache

_MAX_TOKENS = re.compile(rb'"max(?:_completion)?_tokens"\s*:\s*(\d+)')


def _event(obj: bytes) -> bytes:
    return b"data: " + obj + b"\n\n"


@lru_cache(maxsize=64)
def response_bytes(tokens: int) -> bytes:
    head = b'{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"zero","choices":['
    parts = [_event(head + b'{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}')]
    for i in range(tokens):
        finish = b'"length"' if i == tokens - 1 else b"null"
        parts.append(_event(head + b'{"index":0,"delta":{"content":" w%d"},"finish_reason":%s}]}' % (i % 100, finish)))
    parts.append(_event(b'{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"zero",'
                        b'"choices":[],"usage":{"prompt_tokens":8,"completion_tokens":%d,"total_tokens":%d}}'
                        % (tokens, tokens + 8)))
    parts.append(b"data: [DONE]\n\n")
    body = b"".join(parts)
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nx-request-id: r\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


_MODELS = b'{"object":"list","data":[{"id":"zero","object":"model"}]}'
_MODELS_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % len(_MODELS)) + _MODELS


COUNTERS = {"requests": 0, "tokens": 0}


class _Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            length = 0
            lower = head.lower()
            i = lower.find(b"content-length:")
            if i >= 0:
                length = int(lower[i + 15:lower.find(b"\r\n", i) if lower.find(b"\r\n", i) > 0 else None])
            if len(buf) < end + 4 + length:
                break
            body = buf[end + 4:end + 4 + length]
            buf = buf[end + 4 + length:]
            if head.startswith(b"GET /counters"):
                text = json.dumps(COUNTERS).encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"  # type: ignore[attr-defined]
                                     b"Content-Length: %d\r\n\r\n%s" % (len(text), text))
                continue
            if head.startswith(b"GET"):
                self.transport.write(_MODELS_RESPONSE)  # type: ignore[attr-defined]
                continue
            m = _MAX_TOKENS.search(body)
            tokens = int(m.group(1)) if m else 16
            COUNTERS["requests"] += 1
            COUNTERS["tokens"] += tokens
            self.transport.write(response_bytes(tokens))  # type: ignore[attr-defined]
        self.buf = buf


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, "127.0.0.1", port, backlog=4096)
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, __file__], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != "ready":
        proc.kill()
        raise RuntimeError("SSE server did not start")
    return proc, f"http://127.0.0.1:{line[1]}/v1"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(_serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
