"""Where a p99 TTFT comes from: the client's TTFT against the simulator's own, run by run.

Runs the calibration check's scenario (tests/e2e/test_precision_acceptance.py: 64 streams,
its simulator profile) `--runs` times against one simulator, clearing its ground truth
before each run, and prints per run: the requests counted, the client's p99 TTFT and the
simulator's (first chunk written minus request received, same CLOCK_MONOTONIC), what the
top 1 % of the client's TTFTs were on each side and how long they waited in the
simulator's queue (admitted minus received), the client-minus-simulator difference (p99,
max), and the send times of the top 1 % (they come in bursts: a few moments per run).

    python benchmarks/ttft_attribution.py [--runs 4] [--duration 16] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

from benchtest import run_in_process  # noqa: E402
from test_precision_acceptance import PROFILE, _scenario  # noqa: E402

from bench.metrics import catalogue  # noqa: E402
from bench.metrics.catalogue import TTFT  # noqa: E402
from bench.sim import start_sim  # noqa: E402


def _since_received(truth: dict[str, dict[str, Any]], ids: np.ndarray, key: str) -> np.ndarray:
    """Per request id, ms from the simulator's receive to `key` (a time, or the first of a list)."""
    out = np.full(ids.size, np.nan)
    for i, rid in enumerate(ids):
        item = truth.get(rid)
        value = item.get(key) if item else None
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            out[i] = (value - item["received_s"]) * 1e3  # type: ignore[index]
    return out


def one_run(sim: Any, out: Path, seed: int, duration: float) -> str:
    urllib.request.urlopen(urllib.request.Request(f"{sim.root_url}/sim/requests", method="DELETE"), timeout=10).read()
    scenario = _scenario(sim.base_url, seed)
    scenario["load"]["duration"] = duration
    run = run_in_process(out, scenario, out=f"r{seed:02d}").run
    with urllib.request.urlopen(f"{sim.root_url}/sim/requests", timeout=30) as resp:
        truth = {item["id"]: item for item in json.load(resp)}
    rows = catalogue.counted(run.requests)
    client = catalogue.request_values(TTFT, rows)
    ids = rows["server_request_id"].astype(str).to_numpy()
    server = _since_received(truth, ids, "chunk_write_times_s")
    queue = _since_received(truth, ids, "admitted_s")
    top = client >= np.percentile(client, 99)
    sent = rows["sent_s"].to_numpy(dtype=float)
    moments = np.unique(np.round(sent[top] - sent.min(), 1))
    return (f"run {seed}: n {client.size}, p99 client {np.percentile(client, 99):.1f} simulator "
            f"{np.nanpercentile(server, 99):.1f} ms; top 1 %: client {np.median(client[top]):.1f}, simulator "
            f"{np.nanmedian(server[top]):.1f}, queued {np.nanmedian(queue[top]):.1f} ms (medians); client - "
            f"simulator p99 {np.nanpercentile(client - server, 99):.2f}, max {np.nanmax(client - server):.2f} ms; "
            f"top 1 % sent at {len(moments)} moments (s): {' '.join(f'{m:g}' for m in moments)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--duration", type=float, default=16.0)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary directory)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, start_sim(profile=PROFILE, seed=3) as sim:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for seed in range(args.runs):
            print(one_run(sim, out, seed, args.duration), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
