"""A small closed-loop load generator (raw aiohttp, cheap) for the simulator tests."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from typing import Any

import aiohttp

from bench.sim import SimHandle
from tests.sim.conftest import get_json


async def _closed_loop(url: str, model: str, concurrency: int, seconds: float,
                       prompt_words: int, output_tokens: int, stagger_s: float) -> list[str]:
    prompt = " ".join(["word"] * prompt_words)
    ids: list[str] = []
    stop_at = time.perf_counter() + seconds

    async def worker(i: int, session: aiohttp.ClientSession) -> None:
        await asyncio.sleep(i * stagger_s / concurrency)
        k = 0
        while time.perf_counter() < stop_at:
            # Vary lengths a little (+-25 %) so that streams do not march in lockstep.
            n_out = max(2, round(output_tokens * (0.75 + 0.5 * ((i * 7 + k * 3) % 11) / 10)))
            body = {"model": model, "prompt": f"{i} {k} {prompt}", "max_tokens": n_out,
                    "stream": True, "ignore_eos": True}
            async with session.post(url, json=body) as resp:
                resp.raise_for_status()
                ids.append(resp.headers["x-request-id"])
                async for _ in resp.content.iter_any():
                    pass
            k += 1

    conn = aiohttp.TCPConnector(limit=concurrency + 4)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(worker(i, session) for i in range(concurrency)))
    return ids


def run_closed_loop(sim: SimHandle, concurrency: int, seconds: float, prompt_words: int,
                    output_tokens: int, model: str = "sim-small",
                    stagger_s: float = 0.0) -> dict[str, Any]:
    """Run the loop; return ground-truth medians over requests after a warm-up third."""
    ids = asyncio.run(_closed_loop(f"{sim.base_url}/completions", model, concurrency, seconds,
                                   prompt_words, output_tokens, stagger_s))
    wanted = set(ids)
    records = [r for r in get_json(f"{sim.root_url}/sim/requests") if r["id"] in wanted]
    t0 = min(r["received_s"] for r in records)
    t1 = max(r["completed_s"] for r in records)
    warm = t0 + (t1 - t0) / 3
    steady = [r for r in records if r["received_s"] >= warm] or records
    ttft = [r["chunk_write_times_s"][0] - r["received_s"] for r in steady]
    gaps = [b - a for r in steady for a, b in itertools.pairwise(r["chunk_write_times_s"])]
    # Aggregate output tokens/s over the steady window (all requests' tokens in it).
    times = [t for r in records for t in r["token_times_s"] if warm <= t <= t1]
    return {
        "requests": len(records),
        "ttft_ms": statistics.median(ttft) * 1000,
        "itl_ms": statistics.mean(gaps) * 1000,
        "itl_p50_ms": statistics.median(gaps) * 1000,
        "tokens_per_s": len(times) / (t1 - warm),
    }
