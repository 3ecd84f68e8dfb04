"""Client CPU per chunk on bench's per-chunk path, one token per network read.

Two figures, for before/after comparisons of the hot path (run each on both commits,
interleaved, on one pinned core):

- request path: `StreamClient` + `Attempt` (what `bench run` does per request, without the
  runner and the store) in this process on the first core, against the paced server
  (`_paced_server.py`, last core: one write per token), `--streams` x `--rate` tok/s,
  `--tokens`-token answers; process CPU over a 5 s window / content chunks in it;
- recorder: `StreamRecorder.feed` alone on one event per read, 4 and 256 events per read
  (best of 7 rounds of 100 x 256-event bodies), no I/O.

    python benchmarks/chunk_path.py [--streams 64] [--rate 100] [--tokens 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _paced_server import start_paced_server  # noqa: E402

from bench.runner.attempt import Attempt  # noqa: E402
from bench.runner.client import ClientConfig, StreamClient  # noqa: E402
from bench.runner.recorder import StreamRecorder  # noqa: E402
from bench.scenario.schema import Timeouts  # noqa: E402

__all__ = ["main"]

EVENT = (b'data: {"id":"chatcmpl-p","object":"chat.completion.chunk","created":1,"model":"pacing",'
         b'"choices":[{"index":0,"delta":{"content":" w7"},"finish_reason":null}]}\n\n')


async def _request_path(url: str, streams: int, tokens: int) -> tuple[float, float]:
    """(us of CPU per content chunk, chunks/s) over a 5 s window after 2 s of warm-up."""
    client = StreamClient(ClientConfig(url, None, 10.0, max(streams, 64)))
    body = (b'{"model":"pacing","messages":[{"role":"user","content":"hi"}],"stream":true,'
            b'"max_tokens":%d}' % tokens)
    t0 = time.perf_counter()
    stop = t0 + 9.0
    counted = [0]

    async def slot() -> None:
        while time.perf_counter() < stop:
            attempt = Attempt(t0, Timeouts())
            await attempt.run(client, "/chat/completions", body)
            if attempt.error_kind is not None:
                raise RuntimeError(f"{attempt.error_kind}: {attempt.error_message}")
            counted[0] += attempt.recorder.chunks.kind.count(1)

    tasks = [asyncio.ensure_future(slot()) for _ in range(streams)]
    await asyncio.sleep(2.0)
    gc.collect()
    gc.freeze()
    cpu0, n0 = time.process_time(), counted[0]
    await asyncio.sleep(5.0)
    cpu1, n1 = time.process_time(), counted[0]
    await asyncio.gather(*tasks)
    await client.aclose()
    return (cpu1 - cpu0) / max(n1 - n0, 1) * 1e6, (n1 - n0) / 5.0


def recorder_feed(per_read: int) -> float:
    """Best us per event of StreamRecorder.feed with `per_read` whole events per read."""
    data = EVENT * per_read
    best = float("inf")
    for _ in range(7):
        start = time.process_time()
        for _ in range(100):
            recorder = StreamRecorder(0.0)
            for i in range(256 // per_read):
                recorder.feed(0.001 * i, data)
        best = min(best, (time.process_time() - start) / (100 * 256) * 1e6)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--rate", type=float, default=100.0, help="tokens/s per stream")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per answer (a request lasts tokens / rate)")
    args = parser.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server, url = start_paced_server(args.rate, os.devnull, cpus[-1] if len(cpus) > 1 else None)
    try:
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[0]})
        import uvloop

        gc.set_threshold(200_000, 50, 100)
        us, rate = uvloop.run(_request_path(url, args.streams, args.tokens))
    finally:
        server.terminate()
        server.wait(10)
    print(f"request path: {us:.1f} us CPU per chunk ({rate:,.0f} chunks/s, {args.streams} streams x "
          f"{args.rate:g} tok/s, one token per read)")
    gc.disable()
    for per_read in (1, 4, 256):
        print(f"recorder: {recorder_feed(per_read):.2f} us per event, {per_read} event(s) per read")
    return 0


if __name__ == "__main__":
    sys.exit(main())
