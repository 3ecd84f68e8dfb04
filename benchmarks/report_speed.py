"""How long do the reports and plots of a 2,000-request run take? Target: under 10 s.

    python benchmarks/report_speed.py               # makes a run against the simulator first
    python benchmarks/report_speed.py --run DIR     # times an existing run

Times, from the stored run alone: loading it, `bench report` (md + html + csv, figures
included) and `bench plot` (every figure as PNG and SVG). The run is made against the
built-in simulator with fast decode steps (~128 tokens per request, ~250,000 chunks), so the
reports see realistic volumes of requests and ITL gaps. `bench compare` of the run against
itself is timed too, for information.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.analysis.results import load_run  # noqa: E402
from bench.commands.run import run_scenario  # noqa: E402
from bench.commands.rundir import RunOptions  # noqa: E402
from bench.report import compare, figures  # noqa: E402
from bench.report import document as report  # noqa: E402
from bench.scenario.loader import load_scenario  # noqa: E402
from bench.sim import start_sim  # noqa: E402

TARGET_S = 10.0
PROFILE = {"models": ["sim-speed"], "max_num_seqs": 256, "decode_ms_base": 1.0, "decode_ms_per_seq": 0.01,
           "prefill_ms_per_token": 0.001}


def make_run(directory: Path, requests: int) -> Path:
    with start_sim(profile=PROFILE, seed=1) as sim:
        path = directory / "speed.yaml"
        path.write_text(yaml.safe_dump({
            "name": "report-speed", "seed": 1, "target": {"base_url": sim.base_url},
            "requests": {"synthetic": {"prompt_tokens": {"dist": "uniform", "min": 32, "max": 512},
                                       "output_tokens": {"dist": "uniform", "min": 64, "max": 192}}},
            "sampling": {"extra_body": {"ignore_eos": True}},
            "load": {"concurrency": 64, "max_requests": requests, "warmup": {"requests": 64}},
        }))
        result = run_scenario(load_scenario(path), RunOptions(scenario_path=path, out_dir=directory / "run",
                                                              show_progress=False))
    return result.run.path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="an existing run directory (default: make one)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--out", type=Path, help="keep the run and outputs here (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        run_dir = args.run
        if run_dir is None:
            t = time.perf_counter()
            run_dir = make_run(out, args.requests + 64)
            print(f"made the run in {time.perf_counter() - t:.1f} s: {run_dir}")
        t0 = time.perf_counter()
        run = load_run(run_dir)
        t1 = time.perf_counter()
        report.write_reports(run, out / "report")
        t2 = time.perf_counter()
        figures.save_figures(figures.plot_runs([run]), out / "plots", figures.FORMATS)
        t3 = time.perf_counter()
        comparison = compare.compare_runs([run, run], seed=0)
        compare.write_compare(comparison, [run, run], out / "compare")
        t4 = time.perf_counter()
    total = t3 - t0
    print(f"requests: {len(run.requests):,}  chunks: {len(run.chunks):,}  ITL gaps: {len(run.itl):,}")
    print(f"load_run {t1 - t0:.2f} s | report md+html+csv {t2 - t1:.2f} s | plot png+svg {t3 - t2:.2f} s")
    print(f"reports and plots: {total:.2f} s (target < {TARGET_S:g} s: {'ok' if total < TARGET_S else 'SLOW'})")
    print(f"compare (run vs itself, md+html): {t4 - t3:.2f} s")
    return 0 if total < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
