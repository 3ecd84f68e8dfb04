"""Timing accuracy: measured inter-chunk gaps against the server's own write times.

The built-in simulator (another process) runs every stream in one batch whose steps take
exactly `--itl-ms` (20 ms): all streams receive a chunk at the same instant, as from a
batching server. `bench run` (in this process, closed loop, N streams, one request each
round) stamps the chunks; the simulator's ground truth (`chunk_write_times_s`, stamped
right after each socket write, same CLOCK_MONOTONIC) gives the true gaps. Prints the
absolute gap error p50/p99/max and TTFT error per stream count, the client's loop lag and
CPU (run.json), and whether the run flagged itself client-bound.

    python benchmarks/timing_accuracy.py [--streams 1 256 1024] [--tokens 64] [--rounds 2] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.commands.run import run_scenario  # noqa: E402
from bench.commands.rundir import RunOptions  # noqa: E402
from bench.scenario.loader import load_scenario  # noqa: E402
from bench.sim import start_sim  # noqa: E402


def _truth(root_url: str) -> dict[str, dict]:
    with urllib.request.urlopen(f"{root_url}/sim/requests", timeout=30) as resp:
        return {str(item["id"]): item for item in json.load(resp)}


def measure(streams: int, tokens: int, rounds: int, itl_ms: float, workers: int, tmp: Path) -> dict:
    profile = {"models": ["sim-timing"], "max_num_seqs": 8192, "kv_cache_tokens": 100_000_000,
               "max_num_batched_tokens": 10_000_000, "decode_ms_base": itl_ms, "decode_ms_per_seq": 0.0,
               "prefill_ms_per_token": 0.0, "output_len": {"dist": "fixed", "mean": tokens},
               "truth_limit": max(20_000, streams * rounds * 2)}
    with start_sim(profile=profile, seed=1) as sim:
        data = {"name": f"timing-{streams}", "target": {"base_url": sim.base_url},
                "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": tokens}},
                "sampling": {"extra_body": {"ignore_eos": True}},
                "load": {"concurrency": streams, "max_requests": streams * rounds}}
        if workers > 1:
            data["load"]["workers"] = workers
        path = tmp / f"timing-{streams}.yaml"
        path.write_text(yaml.safe_dump(data))
        result = run_scenario(load_scenario(path), RunOptions(scenario_path=path, out_dir=tmp / f"run-{streams}",
                                                             show_progress=False))
        truth = _truth(sim.root_url)
    run = result.run
    t0 = run.manifest.t0_perf_counter
    chunks = run.chunks[run.chunks["kind"] == "content"]
    by_request = {k: v.to_numpy() for k, v in chunks.groupby("request_id", observed=True)["t_s"]}
    gap_err, ttft_err = [], []
    for row in run.requests.itertuples():
        true = truth.get(str(row.server_request_id))
        if true is None or row.request_id not in by_request:
            continue
        writes = np.asarray(true["chunk_write_times_s"])
        measured = by_request[row.request_id] + t0
        if len(writes) != len(measured):
            continue
        gap_err.append(np.abs(np.diff(measured) - np.diff(writes)) * 1e3)
        ttft_err.append(abs((measured[0] - writes[0]) * 1e3))
    gaps = np.concatenate(gap_err) if gap_err else np.empty(0)
    client = run.manifest.client
    return {
        "streams": streams, "requests": len(run.requests), "matched": len(gap_err),
        "gap_err_p50": float(np.median(gaps)) if gaps.size else float("nan"),
        "gap_err_p99": float(np.percentile(gaps, 99)) if gaps.size else float("nan"),
        "gap_err_max": float(gaps.max()) if gaps.size else float("nan"),
        "arrival_delay_p99": float(np.percentile(ttft_err, 99)) if ttft_err else float("nan"),
        "loop_lag_p99": client.loop_lag_ms.p99 if client.loop_lag_ms else None,
        "cpu_mean": client.cpu_percent.mean if client.cpu_percent else None,
        "warnings": [w.code for w in client.warnings or []],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 256, 1024])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--itl-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"simulator: every stream in one batch, a chunk every {args.itl_ms:g} ms, {args.tokens} tokens; "
          f"bench run closed loop, {args.rounds} requests per stream, workers={args.workers}")
    print(f"{'streams':>7} {'gaps err p50':>12} {'p99':>7} {'max':>7}  {'1st chunk vs write p99':>22}  "
          f"{'loop lag p99':>12} {'cpu%':>5}  warnings")
    with tempfile.TemporaryDirectory() as tmp:
        for streams in args.streams:
            r = measure(streams, args.tokens, args.rounds, args.itl_ms, args.workers, Path(tmp))
            lag = f"{r['loop_lag_p99']:.2f}" if r["loop_lag_p99"] is not None else "-"
            cpu = f"{r['cpu_mean']:.0f}" if r["cpu_mean"] is not None else "-"
            print(f"{r['streams']:7d} {r['gap_err_p50']:10.3f}ms {r['gap_err_p99']:7.3f} {r['gap_err_max']:7.1f}  "
                  f"{r['arrival_delay_p99']:20.3f}ms  {lag:>12} {cpu:>5}  {','.join(r['warnings']) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
