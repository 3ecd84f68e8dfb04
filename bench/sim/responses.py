"""Writing a completion response: the SSE stream (chunks come from the engine through the
emitter; the tail is usage and `[DONE]`) or one JSON body for a non-streamed request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from bench.sim.api import JSON
from bench.sim.emitter import ChunkContext, Emitter
from bench.sim.engine import Engine
from bench.sim.responses_api import response_object, terminal_event
from bench.sim.sequence import Seq, Truth

__all__ = ["SSE_HEADERS", "stream_response", "unary_response"]

perf_counter = time.perf_counter
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


async def _run(engine: Engine, seq: Seq) -> None:
    """Submit `seq` and wait until the engine is done with it (cancelled with the handler)."""
    engine.submit(seq)
    try:
        await seq.done
    except asyncio.CancelledError:
        engine.cancel(seq)
        raise


def _usage(truth: Truth, seq: Seq | None = None, reasoning: int = 0, offset: int = 0) -> dict[str, Any]:
    """The usage object; with `reasoning` (the profile's reasoning tokens per chat choice),
    `completion_tokens_details.reasoning_tokens` as vLLM reports it: each choice's first
    min(reasoning, its length) tokens were reasoning (stop strings cut only the content).
    `offset`: the profile's usage_completion_offset, added to completion_tokens (floor 0)."""
    out = max(0, truth.output_tokens + offset)
    usage: dict[str, Any] = {"prompt_tokens": truth.prompt_tokens, "total_tokens": truth.prompt_tokens + out,
                             "completion_tokens": out}
    if truth.cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": truth.cached_tokens}
    if reasoning and seq is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": sum(min(reasoning, t) for t in seq.targets)}
    return usage


async def stream_response(request: web.Request, engine: Engine, seq: Seq, emitter: Emitter, req: Any,
                          chat: bool) -> web.StreamResponse:
    truth = seq.truth
    resp = web.StreamResponse(status=200, headers={**SSE_HEADERS, "x-request-id": truth.id})
    if request.version >= (1, 1):
        resp.enable_chunked_encoding()
    else:  # HTTP/1.0: no chunked framing; the end of the body is the connection's end
        resp.force_close()
    await resp.prepare(request)
    truth.response_start_s = perf_counter()
    emitter.transport = request.transport
    emitter.framed = resp.chunked
    await _run(engine, seq)
    if truth.cancelled or emitter.dropped or not emitter.alive():
        return resp
    tail = b""
    so = req.stream_options
    no_done = emitter.fault is not None and emitter.fault.kind == "no_done"
    if emitter.ctx.responses:
        tail = b"" if no_done else terminal_event(emitter.ctx, truth, emitter.sequence, "".join(emitter.texts[0]),
                                                    "".join(emitter.reasoning[0]))  # no [DONE] in this API
    elif so is not None and so.include_usage:
        ctx = emitter.ctx
        usage: dict[str, Any] = {"id": ctx.id, "object": "chat.completion.chunk" if chat else "text_completion",
                                 "created": ctx.created, "model": ctx.model, "choices": [],
                                 "usage": _usage(truth, seq, ctx.reasoning_tokens if chat else 0, ctx.usage_offset)}
        tail += b"data: " + orjson.dumps(usage) + b"\n\n"
    if not no_done and not emitter.ctx.responses:
        tail += b"data: [DONE]\n\n"
    try:
        await resp.write_eof(tail)  # one write: usage, [DONE] and the chunked end
    except ConnectionResetError:
        truth.cancelled = True
    return resp


def _choices(ctx: ChunkContext, emitter: Emitter, truth: Truth) -> list[dict[str, Any]]:
    choices = []
    for c in range(ctx.n):
        text = "".join(emitter.texts[c])
        entries = emitter.logprob_entries[c]
        lp: dict[str, Any] | None = None
        if ctx.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if emitter.tool is not None and emitter.tool.started[c]:
                message.update(content=None, tool_calls=emitter.tool.message_calls(c))
            if ctx.reasoning_tokens:
                message["reasoning_content"] = "".join(emitter.reasoning[c])
            if ctx.logprobs:
                lp = {"content": [e for chunk in entries for e in chunk]}
            choices.append({"index": c, "message": message, "logprobs": lp,
                            "finish_reason": truth.finish_reasons[c]})
        else:
            if ctx.logprobs:
                lp = {key: [v for chunk in entries for v in chunk[key]]
                      for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset")}
            choices.append({"index": c, "text": text, "logprobs": lp,
                            "finish_reason": truth.finish_reasons[c]})
    return choices


async def unary_response(request: web.Request, engine: Engine, seq: Seq, emitter: Emitter, req: Any,
                         chat: bool) -> web.StreamResponse:
    truth = seq.truth
    await _run(engine, seq)
    ctx = emitter.ctx
    if truth.cancelled or emitter.dropped:
        return web.Response(status=499)  # never sent: the connection is gone
    if ctx.responses:
        body = orjson.dumps(response_object(ctx, truth, "".join(emitter.texts[0]), "".join(emitter.reasoning[0])))
    else:
        body = orjson.dumps({"id": ctx.id, "object": "chat.completion" if chat else
                             "text_completion", "created": ctx.created, "model": ctx.model,
                             "choices": _choices(ctx, emitter, truth),
                             "usage": _usage(truth, seq, ctx.reasoning_tokens if chat else 0, ctx.usage_offset)})
    if emitter.fault is not None and emitter.fault.kind == "malformed":
        body = body[: len(body) // 2]
    truth.response_start_s = perf_counter()
    return web.Response(body=body, content_type=JSON, headers={"x-request-id": truth.id})
