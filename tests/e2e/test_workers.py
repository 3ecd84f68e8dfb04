"""Client worker processes: one seeded schedule sharded across processes, one run directory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from benchtest import run_in_process, write_scenario

import bench
from bench.runner.shards import resolve_workers, shard_plan, shard_stages
from bench.scenario.schema import Timeouts
from bench.sim import start_sim
from bench.workload.plan import RunPlan, StagePlan


def test_shards_cover_the_schedule_exactly_once():
    offsets = np.sort(np.random.default_rng(1).uniform(0, 10, 101))
    stages = [StagePlan(0, offsets=offsets, max_requests=51), StagePlan(1, start_s=10, concurrency=7, end_s=20)]
    shards = [shard_stages(stages, k, 3) for k in range(3)]
    merged = np.sort(np.concatenate([s[0].offsets for s in shards]))
    assert np.array_equal(merged, offsets)
    assert sum(s[0].max_requests for s in shards) == 51
    assert [s[1].concurrency for s in shards] == [3, 2, 2]
    plans = [shard_plan(RunPlan("/chat/completions", Timeouts(), max_requests=10), k, 3) for k in range(3)]
    assert [p.max_requests for p in plans] == [4, 3, 3]


def test_auto_workers_follow_the_load_and_the_cores():
    assert resolve_workers(3, None, 0) == 3
    assert resolve_workers("auto", 50.0, 0, cpus=8) == 1
    assert resolve_workers("auto", 2500.0, 0, cpus=8) == 3
    assert resolve_workers("auto", 2500.0, 0, simulated=True, cpus=2) == 1
    assert resolve_workers("auto", None, 2048, cpus=8) == 4


def _scenario(base_url: str, workers: int) -> dict:
    return {"name": f"w{workers}", "seed": 5, "target": {"base_url": base_url},
            "requests": {"synthetic": {"prompt_tokens": 16, "output_tokens": 8}},
            "load": {"rate": 150, "arrival": "poisson", "duration": 3, "workers": workers}}


def test_two_workers_give_the_same_run_as_one(scenario_dir):
    with start_sim(profile="zero", seed=3) as sim:
        one = run_in_process(scenario_dir, _scenario(sim.base_url, 1), out="one").run
        two = run_in_process(scenario_dir, _scenario(sim.base_url, 2), out="two").run
    assert list(one.requests.columns) == list(two.requests.columns)
    assert list(one.chunks.columns) == list(two.chunks.columns)
    assert sorted(p.name for p in one.path.iterdir()) == sorted(p.name for p in two.path.iterdir())
    assert len(one.requests) == len(two.requests) > 300
    assert two.requests["request_id"].is_unique
    assert (two.requests["status"] == "ok").all()
    # the same global schedule, and the same prompt for the same request
    assert np.allclose(np.sort(one.requests["scheduled_s"]), np.sort(two.requests["scheduled_s"]))
    merged = one.requests.merge(two.requests, on="request_id", suffixes=("_1", "_2"))
    assert (merged["prompt_index_1"] == merged["prompt_index_2"]).all()
    assert np.allclose(merged["scheduled_s_1"], merged["scheduled_s_2"])
    rate1, rate2 = one.summary.to_json()["rate"]["achieved"], two.summary.to_json()["rate"]["achieved"]
    assert abs(rate2 - rate1) / rate1 < 0.05
    assert one.manifest.client.workers is None
    workers = two.manifest.client.workers or []
    assert [w.index for w in workers] == [0, 1]
    assert all(w.loop_lag_ms and (w.loop_lag_ms.count or 0) > 0 and w.cpu_percent and w.cpu_percent.mean is not None
               for w in workers)


def test_sigint_stops_every_worker_and_keeps_the_records(scenario_dir):
    with start_sim(profile="default", seed=5) as sim:
        path = write_scenario(scenario_dir, {
            "name": "long", "target": {"base_url": sim.base_url},
            "requests": {"synthetic": {"prompt_tokens": 32, "output_tokens": 150}},
            "sampling": {"extra_body": {"ignore_eos": True}},
            "load": {"rate": 20, "arrival": "constant", "duration": 60, "workers": 2},
        })
        out = scenario_dir / "run"
        proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(path), "--out", str(out), "--quiet",
                                 "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        journal = out / "requests.jsonl"
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not (journal.exists() and journal.read_bytes().count(b"\n") >= 6):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=40)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["ended"] == "interrupted"
    run = bench.load_run(out)
    assert len(run.requests) == (out / "requests.jsonl").read_bytes().count(b"\n") >= 6
    assert run.requests["request_id"].is_unique
    assert (run.requests["status"] == "cancelled").sum() >= 1
    assert {w["index"] for w in manifest["client"]["workers"]} == {0, 1}


@pytest.mark.parametrize("flag", ["2", "auto"])
def test_workers_flag_is_accepted(flag):
    from bench.commands.parser import build_parser, run_overrides

    args = build_parser().parse_args(["run", "x.yaml", "--workers", flag])
    assert run_overrides(args)["load.workers"] == (int(flag) if flag != "auto" else "auto")
