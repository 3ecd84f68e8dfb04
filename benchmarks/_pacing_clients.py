"""The two clients `benchmarks/pacing.py` times, each run as its own child process.

- bench: a whole `bench run` (closed loop, `load.workers` client processes), in this process;
- lines: raw aiohttp read the way `vllm bench serve` reads a stream (`async for` over the
  body's lines, strip, drop `data: `, `json.loads`, a `time.perf_counter()` per content chunk).

Each writes a pickle: {"stamps": {server request id: content-chunk receive times
(perf_counter s, CLOCK_MONOTONIC)}, "partial": ids of answers cut short when the load was
stopped, "errors": failed requests, "requests": complete answers,
"warnings": the run's client self-checks (bench only), "ended": its end state}.
"""

from __future__ import annotations

import asyncio
import gc
import json
import pickle
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["bench_child", "lines_child", "raise_fd_limit"]


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _body(tokens: int) -> bytes:
    return (b'{"model":"pacing","messages":[{"role":"user","content":"hi"}],"stream":true,'
            b'"stream_options":{"include_usage":true},"max_tokens":%d}' % tokens)


def bench_child(base_url: str, streams: int, workers: int, seconds: float, tokens: int, out: Path) -> None:
    """`bench run` closed loop of `streams` for `seconds`; stamps from the stored run."""
    import yaml

    from bench.commands.run import run_scenario
    from bench.commands.rundir import RunOptions
    from bench.scenario.loader import load_scenario

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pacing.yaml"
        path.write_text(yaml.safe_dump({
            "name": f"pacing-{streams}", "target": {"base_url": base_url, "model": "pacing"},
            "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": tokens}},
            "load": {"concurrency": streams, "duration": seconds, "workers": workers}}))
        result = run_scenario(load_scenario(path), RunOptions(scenario_path=path, out_dir=Path(tmp) / "run",
                                                             show_progress=False))
        run = result.run
        t0 = run.manifest.t0_perf_counter
        chunks = run.chunks[run.chunks["kind"] == "content"]
        by_request = {k: v.to_numpy() + t0 for k, v in chunks.groupby("request_id", observed=True)["t_s"]}
        # cancelled when the load was stopped: cut short, their chunks are the first the
        # server wrote (it may have written more before it saw the connection close)
        ok = run.requests[run.requests["status"] == "ok"]
        cut = run.requests[run.requests["status"] == "cancelled"]
        stamps = {str(row.server_request_id): by_request[row.request_id]
                  for frame in (ok, cut) for row in frame.itertuples() if row.request_id in by_request}
        partial = {str(row.server_request_id) for row in cut.itertuples()}
        client = run.manifest.client
        warnings = [w.code for w in (client.warnings or [])] if client is not None else []
        errors = int((run.requests["status"] == "error").sum())
    with open(out, "wb") as f:
        pickle.dump({"stamps": stamps, "partial": partial, "errors": errors, "requests": len(ok),
                     "warnings": warnings, "ended": str(result.ended)}, f)


def lines_child(base_url: str, streams: int, seconds: float, tokens: int, out: Path) -> None:
    """Raw aiohttp lines reader, closed loop of `streams` for `seconds` or until SIGTERM
    (then in-flight requests finish)."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    stamps: dict[str, Any] = {}
    counts = {"errors": 0, "requests": 0}
    asyncio.run(_lines_loop(base_url, streams, seconds, tokens, stamps, counts))
    with open(out, "wb") as f:
        pickle.dump({"stamps": stamps, "warnings": [], "ended": "finished", **counts}, f)


async def _lines_loop(base_url: str, streams: int, seconds: float, tokens: int,
                      stamps: dict[str, Any], counts: dict[str, int]) -> None:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=streams + 16),
                                    timeout=aiohttp.ClientTimeout(total=None))
    url = base_url + "/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}
    body = _body(tokens)
    gc.collect()
    gc.freeze()
    stop_at = [time.perf_counter() + seconds]
    # SIGTERM: no new requests; the ones in flight finish
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop_at.__setitem__, 0, 0.0)

    async def one() -> None:
        times: list[float] = []
        async with session.post(url, data=body, headers=headers) as resp:
            rid = resp.headers.get("x-request-id", "")
            if resp.status != 200:
                counts["errors"] += 1
                return
            async for raw in resp.content:
                line = raw.strip()
                if not line:
                    continue
                payload = line.removeprefix(b"data: ")
                if payload == b"[DONE]":
                    continue
                data = json.loads(payload)
                choices = data.get("choices")
                if choices and choices[0]["delta"].get("content"):
                    times.append(time.perf_counter())
        stamps[rid] = times
        counts["requests"] += 1

    async def slot() -> None:
        while time.perf_counter() < stop_at[0]:
            try:
                await one()
            except (aiohttp.ClientError, OSError, ValueError):  # as vLLM's reader: the request fails, the loop goes on
                counts["errors"] += 1

    try:
        await asyncio.gather(*(slot() for _ in range(streams)))
    finally:
        await session.close()


if __name__ == "__main__":  # python _pacing_clients.py bench|lines URL STREAMS WORKERS SECONDS TOKENS OUT
    kind, url, n, k, s, t, path = sys.argv[1:8]
    raise_fd_limit()
    if kind == "bench":
        bench_child(url, int(n), int(k), float(s), int(t), Path(path))
    else:
        lines_child(url, int(n), float(s), int(t), Path(path))
