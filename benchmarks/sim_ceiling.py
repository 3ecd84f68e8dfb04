"""Emission ceiling of the simulator: streamed chunks per second on one core.

Starts `bench sim --profile zero` (zero-latency engine) in a child process, then runs a
closed loop of raw-aiohttp streams from this process (reading bytes, counting SSE events,
no JSON parsing: the cheapest client, so the server is the bottleneck) and reports
content chunks/s, per concurrency level, with the server's CPU use.

    python benchmarks/sim_ceiling.py [--streams 64 256 512] [--seconds 5] [--tokens 256]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.sim import (
    load_profile,
    start_sim,
)


async def _stream_loop(session: aiohttp.ClientSession, url: str, body: bytes,
                       stop_at: float, counts: list[int]) -> None:
    headers = {"Content-Type": "application/json"}
    while time.perf_counter() < stop_at:
        async with session.post(url, data=body, headers=headers) as resp:
            resp.raise_for_status()
            n = 0
            tail = b""
            async for data in resp.content.iter_any():
                buf = tail + data
                n += buf.count(b"data: {")
                tail = buf[-7:]  # an event marker split across two reads
                n -= tail.count(b"data: {")
            counts[0] += n - 1  # the role chunk carries no content


async def _run(url: str, streams: int, seconds: float, tokens: int) -> tuple[int, float]:
    body = (b'{"model":"sim-zero","messages":[{"role":"user","content":"hello"}],'
            b'"stream":true,"max_tokens":%d,"ignore_eos":true}' % tokens)
    conn = aiohttp.TCPConnector(limit=streams + 8)
    counts = [0]
    async with aiohttp.ClientSession(connector=conn) as session:
        # Warm up the connection pool, then measure.
        await asyncio.gather(*(_stream_loop(session, url, body, 0.0, counts)
                               for _ in range(1)))
        counts[0] = 0
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*(_stream_loop(session, url, body, stop_at, counts)
                               for _ in range(streams)))
        elapsed = time.perf_counter() - start
    return counts[0], elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--coalesce-steps", type=int, default=None,
                        help="override the zero profile's coalesce_steps (1: a write per chunk)")
    args = parser.parse_args(argv)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    profile: str | dict = "zero"
    if args.coalesce_steps is not None:
        profile = load_profile("zero").model_dump()
        profile["coalesce_steps"] = args.coalesce_steps
    with start_sim(profile) as sim:
        proc = psutil.Process(sim.pid)
        url = f"{sim.base_url}/chat/completions"
        coalesce = load_profile(profile).coalesce_steps
        print(f"bench sim --profile zero, coalesce_steps={coalesce} (pid {sim.pid}); "
              "client: raw aiohttp in this process, bytes only")
        best = best_cpu = 0.0
        for streams in args.streams:
            cpu0 = proc.cpu_times()
            me0 = psutil.Process().cpu_times()
            chunks, elapsed = asyncio.run(_run(url, streams, args.seconds, args.tokens))
            cpu1 = proc.cpu_times()
            me1 = psutil.Process().cpu_times()
            client = (me1.user + me1.system - me0.user - me0.system) / elapsed
            cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / elapsed
            rate = chunks / elapsed
            per_cpu = chunks / max(1e-9, cpu * elapsed)
            best = max(best, rate)
            best_cpu = max(best_cpu, per_cpu)
            print(f"streams={streams:4d}  content chunks/s={rate:10,.0f}  "
                  f"per server CPU-second={per_cpu:10,.0f}  "
                  f"server CPU={cpu * 100:5.1f}%  client CPU={client * 100:5.1f}%")
        # The server is one thread: chunks per CPU-second of it is what one dedicated core
        # emits. Wall-clock chunks/s is lower when the client (or anything else) shares
        # the machine's cores and the server gets less than a whole one.
        print(f"ceiling: {best:,.0f} chunks/s wall clock; {best_cpu:,.0f} chunks per "
              "server CPU-second (one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
