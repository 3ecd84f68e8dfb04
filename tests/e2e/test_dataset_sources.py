"""Dataset sources end to end against the simulator: a local Hugging Face dataset (the
request bodies it received checked exactly) and a BurstGPT trace (sent on its timestamps,
with its token counts); the shipped example scenarios run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from benchtest import run_in_process, sim_truth

from bench.commands.cli import main
from bench.scenario.traces import read_trace
from bench.sim import start_sim

REPO = Path(__file__).resolve().parents[2]
PARQUET = REPO / "scenarios" / "data" / "instructions.parquet"
BURSTGPT = REPO / "scenarios" / "traces" / "burstgpt_sample.csv"


def test_a_hf_dataset_sends_each_row_as_written_with_its_output_budget(scenario_dir):
    rows = pd.read_parquet(PARQUET)
    with start_sim(profile={"models": ["sim-d"], "record_bodies": True}, seed=2) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url},
            "requests": {"file": str(PARQUET), "format": "hf", "order": "cycle",
                         "columns": {"prompt": "instruction", "output_tokens": "output_tokens"}},
            "load": {"concurrency": 1, "max_requests": len(rows)}})
        truth = sim_truth(sim.root_url)
    bodies = [t["body"] for t in sorted(truth.values(), key=lambda t: t["received_s"])]
    assert [b["messages"] for b in bodies] == [[{"role": "user", "content": text}] for text in rows["instruction"]]
    assert [b["max_tokens"] for b in bodies] == rows["output_tokens"].tolist()
    assert (result.run.requests["status"] == "ok").all()
    assert result.run.manifest.workload.records == len(rows)


def test_a_burstgpt_trace_is_replayed_on_its_timestamps_without_its_failed_rows(scenario_dir):
    trace = read_trace(BURSTGPT)
    with start_sim(profile="zero", seed=1) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url, "endpoint": "completions"},
            "load": {"trace": {"file": str(BURSTGPT), "format": "burstgpt", "speedup": 4.0}}})
    req = result.run.requests.sort_values("request_id")
    assert len(req) == len(trace) == 10  # 12 rows, 2 failed in the log
    expected = trace["timestamp_s"].to_numpy() / 4.0
    assert np.abs(req["scheduled_s"].to_numpy() - expected).max() < 1e-9
    assert (req["prompt_tokens"].to_numpy() == trace["input_tokens"].to_numpy()).all()
    assert (req["max_tokens"].to_numpy() == trace["output_tokens"].to_numpy()).all()
    assert "trace: 2 rows with 0 response tokens" in " ".join(result.run.manifest.notes)


def test_the_shipped_dataset_scenarios_run(tmp_path, capsys):
    for name in ("hf-dataset", "burstgpt"):
        assert main(["run", str(REPO / "scenarios" / f"{name}.yaml"), "--out", str(tmp_path / name), "--quiet",
                     "--no-report"]) == 0
        manifest = json.loads((tmp_path / name / "run.json").read_text())
        assert manifest["ended"] == "completed"
    assert capsys.readouterr().err == ""  # no progress bars of the datasets library in bench's output
