"""Client ceiling: bench's request path vs raw aiohttp, against a zero-latency server.

Starts benchmarks/_sse_server.py (another process, one core) and, for each concurrency,
runs a closed loop for `--seconds` in a fresh child process per client (one core each):

- bench:  bench.runner.client.StreamClient (AsyncOpenAI.post on aiohttp) + the runner's Attempt
          (stamping, SSE split, orjson, chunk columns, timeouts): what `bench run` does;
- lines:  raw aiohttp, `async for line in resp.content`, orjson per data line (vllm bench);
- bytes:  raw aiohttp, read bytes, no parsing (the ceiling).

Prints content chunks/s (256-chunk responses), short requests/s (1-chunk responses),
client CPU, and bench/lines and bench/bytes ratios.

    python benchmarks/client_ceiling.py [--concurrency 1 64 512 2048] [--seconds 4] [--tokens 256] [--repeat 1]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CLIENTS = ("bench", "lines", "bytes")


def _body(tokens: int) -> bytes:
    return (b'{"model":"zero","messages":[{"role":"user","content":"hi"}],"stream":true,'
            b'"stream_options":{"include_usage":true},"max_tokens":%d}' % tokens)


async def _bench_loop(base_url: str, concurrency: int, seconds: float, tokens: int) -> tuple[int, int]:
    from bench.runner.attempt import Attempt
    from bench.runner.client import ClientConfig, StreamClient
    from bench.scenario.schema import Timeouts

    client = StreamClient(ClientConfig(base_url, None, 10.0, max(concurrency, 64)))
    timeouts = Timeouts()
    body = _body(tokens)
    t0 = time.perf_counter()
    counts = [0, 0]

    async def one() -> None:
        attempt = Attempt(t0, timeouts)
        await attempt.run(client, "/chat/completions", body)
        if attempt.error_kind is not None:
            raise RuntimeError(f"{attempt.error_kind}: {attempt.error_message}")
        counts[0] += attempt.recorder.chunks.kind.count(1)
        counts[1] += 1

    try:
        return await _closed_loop(one, concurrency, seconds, counts)
    finally:
        await client.aclose()


async def _raw_loop(base_url: str, concurrency: int, seconds: float, tokens: int, parse: bool) -> tuple[int, int]:
    import aiohttp
    import orjson

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(concurrency, 64)))
    url = base_url + "/chat/completions"
    body = _body(tokens)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}
    counts = [0, 0]

    async def one() -> None:
        async with session.post(url, data=body, headers=headers) as resp:
            resp.raise_for_status()
            if parse:
                n = 0
                async for line in resp.content:
                    line = line.strip()
                    if line.startswith(b"data: ") and line != b"data: [DONE]":
                        event = orjson.loads(line[6:])
                        choices = event.get("choices")
                        if choices and choices[0]["delta"].get("content"):
                            n += 1
                counts[0] += n
            else:
                async for _ in resp.content.iter_any():
                    pass
                counts[0] += tokens
        counts[1] += 1

    try:
        return await _closed_loop(one, concurrency, seconds, counts)
    finally:
        await session.close()


async def _closed_loop(one, concurrency: int, seconds: float, counts: list[int]) -> tuple[int, int]:
    await asyncio.gather(*(one() for _ in range(min(concurrency, 64))))  # warm the pool
    gc.collect()
    gc.freeze()
    counts[0] = counts[1] = 0
    stop_at = time.perf_counter() + seconds

    async def slot() -> None:
        while time.perf_counter() < stop_at:
            await one()

    await asyncio.gather(*(slot() for _ in range(concurrency)))
    return counts[0], counts[1]


def child(client: str, base_url: str, concurrency: int, seconds: float, tokens: int) -> dict[str, float]:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    gc.set_threshold(200_000, 50, 100)
    if client == "bench":
        coro = _bench_loop(base_url, concurrency, seconds, tokens)
    else:
        coro = _raw_loop(base_url, concurrency, seconds, tokens, parse=client == "lines")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    chunks, requests = asyncio.run(coro)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    # Throughput over the measured window only (the warm-up is excluded from the counts).
    return {"chunks_per_s": chunks / seconds, "requests_per_s": requests / seconds,
            "cpu_percent": 100.0 * cpu / wall}


def _run_child(client: str, base_url: str, concurrency: int, seconds: float, tokens: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", client, base_url, str(concurrency), str(seconds),
                          str(tokens)], capture_output=True, text=True, timeout=seconds * 4 + 60)
    if out.returncode != 0:
        raise RuntimeError(f"{client} child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(results: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64, 512, 2048])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--short-concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1, help="runs per point; medians are printed")
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS), choices=CLIENTS)
    parser.add_argument("--child", nargs=5, metavar=("CLIENT", "URL", "C", "S", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        client, url, c, s, t = args.child
        print(json.dumps(child(client, url, int(c), float(s), int(t))))
        return 0
    from _sse_server import start_server

    proc, base_url = start_server()
    try:
        print(f"zero-latency SSE server {base_url} (pid {proc.pid}); one client process per point; "
              f"{args.seconds:g} s closed loop; medians of {args.repeat}")
        print(f"\nstreaming: {args.tokens}-chunk responses")
        print(f"{'streams':>8} " + " ".join(f"{c + ' chunks/s':>16} {'cpu%':>5}" for c in args.clients) + "   ratios")
        for concurrency in args.concurrency:
            row = {c: [_run_child(c, base_url, concurrency, args.seconds, args.tokens) for _ in range(args.repeat)]
                   for c in args.clients}
            print(_line(concurrency, row, args.clients, "chunks_per_s"))
        print(f"\nshort requests: 1-chunk responses, {args.short_concurrency} streams")
        row = {c: [_run_child(c, base_url, args.short_concurrency, args.seconds, 1) for _ in range(args.repeat)]
               for c in args.clients}
        print(f"{'streams':>8} " + " ".join(f"{c + ' req/s':>16} {'cpu%':>5}" for c in args.clients) + "   ratios")
        print(_line(args.short_concurrency, row, args.clients, "requests_per_s"))
    finally:
        proc.terminate()
        proc.wait(10)
    return 0


def _line(concurrency: int, row: dict[str, list[dict[str, float]]], clients: list[str], key: str) -> str:
    values = {c: _median(row[c], key) for c in clients}
    cells = " ".join(f"{values[c]:16,.0f} {_median(row[c], 'cpu_percent'):5.0f}" for c in clients)
    ratios = []
    if "bench" in values:
        for other in ("lines", "bytes"):
            if other in values and values[other] > 0:
                ratios.append(f"bench/{other} {values['bench'] / values[other]:.2f}")
    return f"{concurrency:8d} {cells}   {'  '.join(ratios)}"


if __name__ == "__main__":
    sys.exit(main())
