"""POST /v1/embeddings: one JSON answer, after a latency the profile gives.

A request of `k` inputs holding `t` tokens in all (one token per word, a token-id input its
length) takes `embedding_ms_per_input * k + embedding_ms_per_token * t` ms after
`header_delay_ms`; requests do not queue behind each other (the decode engine is not
involved). Each vector is `embedding_dims` floats drawn from the input's text, so the same
input always gets the same vector; `usage.prompt_tokens` is `t`.
"""

from __future__ import annotations

import asyncio
import base64
import random
import struct
import time
from typing import Any

import orjson
from aiohttp import web

from bench.sim.api import JSON, ApiError, EmbeddingRequest
from bench.sim.profile import Profile
from bench.sim.sequence import Truth
from bench.sim.text import stable_hash

__all__ = ["embedding_answer", "embedding_delay_s", "input_tokens"]


def input_tokens(item: str | list[int]) -> int:
    return len(item) if isinstance(item, list) else len(item.split())


def embedding_delay_s(profile: Profile, inputs: int, tokens: int) -> float:
    """Seconds one request takes, headers delay included."""
    ms = profile.header_delay_ms + profile.embedding_ms_per_input * inputs + profile.embedding_ms_per_token * tokens
    return ms / 1000.0


def _vector(item: str | list[int], dims: int) -> list[float]:
    rng = random.Random(stable_hash(item if isinstance(item, str) else " ".join(map(str, item))))
    return [round(rng.uniform(-1.0, 1.0), 6) for _ in range(dims)]


def _encoded(vector: list[float], encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


async def embedding_answer(request: web.Request, req: EmbeddingRequest, profile: Profile,
                           truth: Truth) -> web.Response:
    """Serve a parsed request (its model checked by the caller); ApiError on a bad input."""
    items = req.inputs()
    if not items or any(isinstance(i, str) and not i.strip() for i in items):
        raise ApiError(400, "input: an input is empty", "input")
    if req.encoding_format not in ("float", "base64"):
        raise ApiError(400, f"encoding_format: must be float or base64 (got {req.encoding_format!r})",
                       "encoding_format")
    tokens = sum(input_tokens(i) for i in items)
    truth.n = len(items)
    truth.prompt_tokens = tokens
    await asyncio.sleep(embedding_delay_s(profile, len(items), tokens))
    dims = req.dimensions or profile.embedding_dims
    data = [{"object": "embedding", "index": i, "embedding": _encoded(_vector(item, dims), req.encoding_format)}
            for i, item in enumerate(items)]
    body = orjson.dumps({"object": "list", "data": data, "model": req.model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
    truth.response_start_s = time.perf_counter()
    return web.Response(body=body, content_type=JSON, headers={"x-request-id": truth.id})
