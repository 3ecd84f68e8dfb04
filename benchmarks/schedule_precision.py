"""Schedule precision: Poisson arrivals at fixed rates, achieved rate and send lag.

Runs `bench run` (in this process; `--workers` adds client processes) against the
zero-latency server of benchmarks/_sse_server.py (another process), 16-token responses,
and prints per rate: requests, achieved/offered rate, send lag (sent - scheduled)
p50/p99/max, client loop lag and CPU from run.json, the run's client warnings, and up to
1,000 req/s PASS or FAIL against the schedule target (achieved within 2 % of offered, send
lag p99 under 5 ms); exit 1 on any FAIL.

    python benchmarks/schedule_precision.py [--rates 10 100 1000 5000] [--workers 1 2] [--tokens 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _sse_server import start_server  # noqa: E402

from bench.commands.run import run_scenario  # noqa: E402
from bench.commands.rundir import RunOptions  # noqa: E402
from bench.scenario.loader import load_scenario  # noqa: E402

# The schedule target, for rates up to TARGET_MAX_RATE: achieved within 2 % of offered, send
# lag p99 under 5 ms.
TARGET_MAX_RATE, TARGET_RATE_SHARE, TARGET_LAG_P99_MS = 1000.0, 0.02, 5.0


def verdict(rate: float, achieved: float, lag_p99_ms: float) -> str:
    """PASS/FAIL against the target, or "-" above the rates it covers."""
    if rate > TARGET_MAX_RATE:
        return "-"
    ok = abs(achieved / rate - 1) <= TARGET_RATE_SHARE and lag_p99_ms < TARGET_LAG_P99_MS
    return "PASS" if ok else "FAIL"


def duration_for(rate: float) -> float:
    return float(np.clip(2000.0 / rate, 3.0, 20.0))


def measure(base_url: str, rate: float, workers: int, tokens: int, tmp: Path, seconds: float | None) -> dict:
    name = f"poisson-{rate:g}-w{workers}"
    data = {"name": name, "seed": 7, "target": {"base_url": base_url, "model": "zero"},
            "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": tokens}},
            "load": {"rate": rate, "arrival": "poisson", "duration": seconds or duration_for(rate),
                     "workers": workers}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    run = run_scenario(load_scenario(path), RunOptions(scenario_path=path, out_dir=tmp / name,
                                                       show_progress=False)).run
    req = run.requests
    lag = ((req["sent_s"] - req["scheduled_s"]) * 1e3).to_numpy(dtype="float64")
    client = run.manifest.client
    procs = list(client.workers or []) or [client]
    return {
        "rate": rate, "workers": workers, "requests": len(req), "errors": int((req["status"] != "ok").sum()),
        "achieved": run.summary.to_json()["rate"]["achieved"],
        "lag_p50": float(np.percentile(lag, 50)), "lag_p99": float(np.percentile(lag, 99)),
        "lag_max": float(lag.max()),
        "loop_lag_p99": max((p.loop_lag_ms.p99 if p.loop_lag_ms else None) or 0.0 for p in procs),
        "cpu": max((p.cpu_percent.mean if p.cpu_percent else None) or 0.0 for p in procs),
        "warnings": [w.code for w in client.warnings or []],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 100, 1000, 5000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=None, help="override the per-rate duration")
    args = parser.parse_args(argv)
    proc, base_url = start_server()
    try:
        print(f"zero-latency SSE server {base_url}; Poisson arrivals; {args.tokens}-token responses")
        print(f"target up to {TARGET_MAX_RATE:,.0f} req/s: achieved within {TARGET_RATE_SHARE:.0%} of offered, "
              f"send lag p99 < {TARGET_LAG_P99_MS:g} ms")
        print(f"{'rate':>6} {'workers':>7} {'requests':>8} {'achieved':>9} {'ratio':>6}  {'lag p50':>8} {'p99':>7} "
              f"{'max':>7}  {'loop p99':>8} {'cpu%':>5}  {'target':>6}  warnings")
        verdicts = []
        with tempfile.TemporaryDirectory() as tmp:
            for rate in args.rates:
                for workers in args.workers:
                    r = measure(base_url, rate, workers, args.tokens, Path(tmp), args.seconds)
                    verdicts.append(verdict(rate, r["achieved"], r["lag_p99"]))
                    print(f"{r['rate']:6g} {r['workers']:7d} {r['requests']:8d} {r['achieved']:9.1f} "
                          f"{r['achieved'] / rate:6.3f}  {r['lag_p50']:6.2f}ms {r['lag_p99']:7.2f} {r['lag_max']:7.1f}  "
                          f"{r['loop_lag_p99']:8.2f} {r['cpu']:5.0f}  {verdicts[-1]:>6}  {','.join(r['warnings']) or '-'}"
                          + (f"  errors={r['errors']}" if r["errors"] else ""), flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
    return 1 if "FAIL" in verdicts else 0


if __name__ == "__main__":
    sys.exit(main())
