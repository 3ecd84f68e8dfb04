"""A loopback HTTPS server that streams chat chunks at known times (for the `read` stamp tests).

    python tests/tls_sse_server.py CERT_PEM KEY_PEM CHUNKS GAP_MS   # prints "ready PORT"

POST /v1/chat/completions streams CHUNKS one-token content chunks, GAP_MS apart, then a usage
chunk and [DONE]; the perf_counter time just before each content chunk's write (the machine's
one CLOCK_MONOTONIC, as the client's) is logged under the response's x-request-id.
GET /writes returns that log; GET /v1/models names the one model. Stopped by its PID.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import sys
import time

from aiohttp import web


def _event(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _chunk(rid: str, delta: dict[str, str], finish: str | None) -> bytes:
    return _event({"id": rid, "object": "chat.completion.chunk", "created": 1, "model": "tls-model",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def make_app(chunks: int, gap_s: float) -> web.Application:
    writes: dict[str, list[float]] = {}
    ids = itertools.count()

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        rid = f"tls-{next(ids)}"
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-request-id": rid})
        await resp.prepare(request)
        times = writes[rid] = []
        for i in range(chunks):
            await asyncio.sleep(gap_s)
            delta = {"role": "assistant", "content": f" w{i}"} if i == 0 else {"content": f" w{i}"}
            times.append(time.perf_counter())
            await resp.write(_chunk(rid, delta, "length" if i == chunks - 1 else None))
        await resp.write(_event({"id": rid, "object": "chat.completion.chunk", "created": 1, "model": "tls-model",
                                 "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": chunks,
                                                          "total_tokens": chunks + 4}}) + b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "tls-model", "object": "model"}]})

    async def log(_: web.Request) -> web.Response:
        return web.json_response(writes)

    app = web.Application()
    app.add_routes([web.post("/v1/chat/completions", chat), web.get("/v1/models", models),
                    web.get("/writes", log)])
    return app


async def main(cert: str, key: str, chunks: int, gap_ms: float) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(make_app(chunks, gap_ms / 1e3), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"ready {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
