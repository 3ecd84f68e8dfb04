"""Worker scaling: short requests per second with `--workers 1` and `--workers 2`.

`bench run` (in this process; with workers, K client processes plus this one writing the
run directory) drives a closed loop of 64 streams of 1-token responses against the
zero-latency SSE server (`_sse_server.py`, another process) for `--seconds`, alternating
worker counts, `--repeat` times. Prints achieved requests/s, each process's CPU (run.json)
and the ratio of the medians.

On a 2-core machine the server, the parent and both workers share two cores, so the
2-worker figure is a floor: with a core per worker and one for the server it can only
rise. For the 1-worker runs the server is pinned to the last core and the client to the
others (left to itself, the OS often puts both on one core and the baseline drops by up
to 30 %), so the baseline is one client with a whole core.

    python benchmarks/worker_scaling.py [--workers 1 2] [--repeat 3] [--seconds 6] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _sse_server import start_server  # noqa: E402

from bench.commands.run import run_scenario  # noqa: E402
from bench.commands.rundir import RunOptions  # noqa: E402
from bench.runner.process import separate_cores  # noqa: E402
from bench.scenario.loader import load_scenario  # noqa: E402


@contextmanager
def _placement(server_pid: int, workers: int) -> Iterator[None]:
    """1 worker: client and server on separate cores. More: every process on every core."""
    every_cpu = os.sched_getaffinity(0)
    with ExitStack() as stack:
        if workers == 1 and separate_cores(server_pid, stack) is not None:
            stack.callback(os.sched_setaffinity, server_pid, every_cpu)  # the server stays up for the next run
        yield


def measure(base_url: str, workers: int, seconds: float, concurrency: int, tmp: Path, run: int) -> dict:
    path = tmp / f"w{workers}-{run}.yaml"
    path.write_text(yaml.safe_dump({
        "name": f"workers-{workers}", "target": {"base_url": base_url, "model": "zero"},
        "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": 1}},
        "load": {"concurrency": concurrency, "duration": seconds, "workers": workers}}))
    result = run_scenario(load_scenario(path), RunOptions(scenario_path=path, out_dir=tmp / f"run-{workers}-{run}",
                                                         show_progress=False))
    summary = result.run.summary.to_json()
    client = result.run.manifest.client
    return {
        "workers": workers,
        "req_s": summary["throughput"]["requests_per_s"],
        "errors": summary["requests"]["total"] - summary["requests"]["ok"],
        "parent_cpu": client.cpu_percent.mean if client.cpu_percent else None,
        "worker_cpu": [w.cpu_percent.mean if w.cpu_percent else None for w in client.workers or []],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    server, base_url = start_server()
    rates: dict[int, list[float]] = {k: [] for k in args.workers}
    try:
        print(f"zero-latency SSE server {base_url}; closed loop, {args.concurrency} streams, 1-token responses, "
              f"{args.seconds:g} s per run")
        print(f"{'workers':>7} {'req/s':>8} {'errors':>6}  {'parent cpu%':>11}  worker cpu%")
        with tempfile.TemporaryDirectory() as tmp:
            for run in range(args.repeat):
                for workers in args.workers:
                    with _placement(server.pid, workers):
                        r = measure(base_url, workers, args.seconds, args.concurrency, Path(tmp), run)
                    rates[workers].append(r["req_s"])
                    parent = f"{r['parent_cpu']:.0f}" if r["parent_cpu"] is not None else "-"
                    print(f"{workers:7d} {r['req_s']:8.0f} {r['errors']:6d}  {parent:>11}  "
                          f"{', '.join(f'{c:.0f}' for c in r['worker_cpu']) or '-'}", flush=True)
    finally:
        server.kill()
        server.wait()
    medians = {k: statistics.median(v) for k, v in rates.items()}
    base = medians[args.workers[0]]
    for workers, median in medians.items():
        print(f"workers={workers}: median {median:,.0f} req/s, {median / base:.2f}x workers={args.workers[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
