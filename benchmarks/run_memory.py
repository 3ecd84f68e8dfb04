"""Memory during a run: does the client's RSS grow with the number of finished requests?

Runs `bench run` (closed loop, zero-latency SSE server from `_sse_server.py` in another
process) in a fresh child process; a thread in that child samples its RSS and the number
of journalled records every 0.25 s. Prints RSS against finished requests and the growth
per 1,000 finished requests over the second half of the run (after warm-up, allocator
and pool sizes have settled). Growth per finished request should be ~0: records go to
disk as they finish; only in-flight state is held.

    python benchmarks/run_memory.py [--requests 60000] [--concurrency 64] [--tokens 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * 4096


def _count_lines(path: Path, state: dict[str, int]) -> int:
    """Records journalled so far (counts newlines incrementally)."""
    try:
        with open(path, "rb") as f:
            f.seek(state.get("offset", 0))
            data = f.read()
    except FileNotFoundError:
        return 0
    state["offset"] = state.get("offset", 0) + len(data)
    state["lines"] = state.get("lines", 0) + data.count(b"\n")
    return state["lines"]


def child(base_url: str, requests: int, concurrency: int, tokens: int) -> list[tuple[float, int, int]]:
    import yaml

    from bench.commands.run import run_scenario
    from bench.commands.rundir import RunOptions
    from bench.scenario.loader import load_scenario

    samples: list[tuple[float, int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        path = Path(tmp) / "memory.yaml"
        path.write_text(yaml.safe_dump({
            "name": "memory", "target": {"base_url": base_url, "model": "zero"},
            "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": tokens}},
            "load": {"concurrency": concurrency, "max_requests": requests}}))
        done = threading.Event()
        start = time.perf_counter()

        def sample() -> None:
            state: dict[str, int] = {}
            while not done.wait(0.25):
                samples.append((time.perf_counter() - start, _count_lines(run_dir / "requests.jsonl", state),
                                _rss_bytes()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        run_scenario(load_scenario(path), RunOptions(scenario_path=path, out_dir=run_dir, show_progress=False))
        done.set()
        sampler.join()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.requests, args.concurrency, args.tokens)))
        return 0
    from _sse_server import start_server

    server, base_url = start_server()
    try:
        out = subprocess.run([sys.executable, __file__, "--child", base_url, "--requests", str(args.requests),
                              "--concurrency", str(args.concurrency), "--tokens", str(args.tokens)],
                             capture_output=True, text=True, check=True)
    finally:
        server.kill()
        server.wait()
    samples = [s for s in json.loads(out.stdout.strip().splitlines()[-1]) if s[1] > 0]
    print(f"bench run: closed loop, {args.concurrency} streams, {args.tokens}-token responses, "
          f"{args.requests} requests; RSS of the client process")
    print(f"{'t s':>6} {'finished':>9} {'RSS MiB':>8}")
    step = max(1, len(samples) // 10)
    for t, n, rss in samples[::step]:
        print(f"{t:6.1f} {n:9d} {rss / 2**20:8.1f}")
    measuring = [s for s in samples if s[1] < args.requests]  # before the end-of-run finalize
    half = [s for s in measuring if s[1] >= args.requests / 2]
    if len(half) >= 2:
        (_, n0, r0), (_, n1, r1) = half[0], half[-1]
        growth = (r1 - r0) / max(n1 - n0, 1) * 1000
        print(f"second half: {n0} -> {n1} finished, RSS {r0 / 2**20:.1f} -> {r1 / 2**20:.1f} MiB: "
              f"{growth / 1024:+.1f} KiB per 1,000 finished requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
