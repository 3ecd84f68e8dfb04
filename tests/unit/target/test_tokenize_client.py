"""The server's /tokenize, asked after a run: its shape (vLLM/SGLang or llama.cpp) found by a
probe, each text counted, failures kept per text; a server without one is None. Against the
simulator, which answers both shapes with its own truth (one token per word)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bench.sim import start_sim
from bench.target.tokenize_client import PROBE_TEXT, open_tokenize


async def _counts(base_url: str, texts: list[str], models: list[str | None]):
    session = await open_tokenize(base_url, None, "sim-small", 10.0)
    assert session is not None
    try:
        return session.dialect, await session.count_all(texts, models)
    finally:
        await session.aclose()


def test_the_vllm_shape_counts_with_the_servers_tokenizer():
    with start_sim("default", seed=1) as sim:
        dialect, counts = asyncio.run(_counts(sim.base_url, [" one two three", "", "x"], [None, None, "no-such"]))
    assert dialect == "vllm"
    assert counts[:2] == [3, 0]
    assert isinstance(counts[2], str) and "HTTP 404" in counts[2]  # a model the server lacks: that text fails


class _LlamaLike:
    """A llama.cpp-shaped /tokenize: the vLLM shape gets 200 and no tokens, as llama.cpp answers it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []

    async def tokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        words = body.get("content", "").split()
        return web.json_response({"tokens": list(range(len(words)))})


async def _llama_counts(texts: list[str]) -> tuple[object, list, list[dict]]:
    server = _LlamaLike()
    app = web.Application()
    app.router.add_post("/tokenize", server.tokenize)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        session = await open_tokenize(f"http://127.0.0.1:{port}/v1", "key", "m", 10.0)
        assert session is not None
        counts = await session.count_all(texts, [None] * len(texts))
        await session.aclose()
        return session.dialect, counts, server.bodies
    finally:
        await runner.cleanup()


def test_the_llama_cpp_shape_is_found_by_the_probe():
    dialect, counts, bodies = asyncio.run(_llama_counts(["a b", "c d e"]))
    assert dialect == "llama.cpp" and counts == [2, 3]
    assert bodies[0] == {"model": "m", "prompt": PROBE_TEXT, "add_special_tokens": False}
    assert bodies[1] == {"content": PROBE_TEXT, "add_special": False}
    assert bodies[2:] == [{"content": "a b", "add_special": False}, {"content": "c d e", "add_special": False}]


def test_a_server_without_tokenize_is_none():
    async def probe(url: str):
        return await open_tokenize(url, None, "m", 2.0)

    with start_sim("default", seed=1) as sim:
        assert asyncio.run(probe(sim.base_url.replace("/v1", "/v1/nowhere"))) is None


def test_many_texts_are_counted_slice_by_slice_in_order(monkeypatch):
    from bench.target import tokenize_client

    monkeypatch.setattr(tokenize_client, "_SLICE", 2)
    _, counts, _ = asyncio.run(_llama_counts(["a", "a b", "", "a b c d", "a b c"]))
    assert counts == [1, 2, 0, 4, 3]


def test_an_empty_text_is_zero_without_asking():
    _, counts, bodies = asyncio.run(_llama_counts(["", "a"]))
    assert counts == [0, 1] and bodies[2:] == [{"content": "a", "add_special": False}]
