"""Several models in one run (`target.models`) against the simulator serving several names with
per-model profiles: the split counted on the server side, per-model summaries against each
model's profile, the report's and compare's per-model tables, and the shipped example."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from benchtest import run_in_process, sim_truth

import bench
from bench.commands.cli import main
from bench.metrics.catalogue import ITL, OUTPUT_TOKENS, TPOT, TTFT
from bench.report.document import write_reports
from bench.report.figures import run_figures
from bench.report.tables import report_tables
from bench.sim import start_sim
from bench.sim.profile import load_profile, model_profile, predict

REPO = Path(__file__).resolve().parents[2]


def test_a_70_30_split_over_1000_requests_is_within_3_points_on_the_server(scenario_dir):
    profile = {"models": ["m-big", "m-small"], "record_bodies": True, "decode_ms_base": 0.0, "decode_ms_per_seq": 0.0,
               "prefill_ms_per_token": 0.0, "output_len": {"dist": "fixed", "mean": 2}}
    with start_sim(profile=profile, seed=1) as sim:
        result = run_in_process(scenario_dir, {
            "seed": 21, "target": {"base_url": sim.base_url, "models": {"m-big": 70, "m-small": 30}},
            "requests": {"inline": ["a b c", "d e f g"]},
            "sampling": {"max_tokens": 2},
            "load": {"concurrency": 16, "max_requests": 1000},
        })
        truth = sim_truth(sim.root_url)
    served = Counter(t["body"]["model"] for t in truth.values() if t["endpoint"] == "chat")
    assert sum(served.values()) == 1000 and set(served) == {"m-big", "m-small"}
    assert abs(served["m-big"] / 1000 - 0.70) <= 0.03
    # every record names the model the server answered as
    requests = result.run.requests
    by_id = {t["id"]: t["model"] for t in truth.values()}
    assert (requests["status"] == "ok").all()
    assert requests["model"].tolist() == [by_id[i] for i in requests["server_request_id"]]
    summary = result.run.summary
    assert sorted(summary.models) == ["m-big", "m-small"]
    assert summary.models["m-big"].requests.total == served["m-big"]
    assert summary.models["m-small"].requests.total == served["m-small"]
    stored = json.loads((result.run.path / "summary.json").read_text())
    assert stored["models"]["m-small"]["requests"]["total"] == served["m-small"]


def test_the_draw_is_the_seeds_and_a_list_goes_round_robin(scenario_dir):
    profile = {"models": ["x", "y", "z"], "record_bodies": True, "decode_ms_base": 0.0, "decode_ms_per_seq": 0.0,
               "prefill_ms_per_token": 0.0, "output_len": {"dist": "fixed", "mean": 1}}
    orders = []
    with start_sim(profile=profile, seed=1) as sim:
        for k, models in enumerate(({"x": 1, "y": 1}, {"x": 1, "y": 1}, ["x", "y", "z"])):
            result = run_in_process(scenario_dir, {
                "seed": 4, "target": {"base_url": sim.base_url, "models": models},
                "requests": {"inline": ["hello there"]}, "sampling": {"max_tokens": 1},
                "load": {"concurrency": 1, "max_requests": 12},
            }, out=f"run{k}")
            orders.append(result.run.requests.sort_values("request_id")["model"].tolist())
    assert orders[0] == orders[1] and set(orders[0]) == {"x", "y"}  # the same seed, the same draws
    assert orders[2] == ["x", "y", "z"] * 4


def _two_deployments() -> dict:
    return {"models": ["fast", "slow"], "adapters": {"fast-lora": "fast"},
            "model_profiles": {"slow": {"decode_ms_base": 30.0}, "fast-lora": {"output_len": {"dist": "fixed", "mean": 4}}},
            "decode_ms_base": 10.0, "decode_ms_per_seq": 0.0, "prefill_ms_per_token": 0.0,
            "output_len": {"dist": "fixed", "mean": 12}, "max_num_seqs": 8}


def test_per_model_summaries_match_each_models_profile(scenario_dir, tmp_path, capsys):
    profile = _two_deployments()
    with start_sim(profile=profile, seed=2) as sim:
        result = run_in_process(scenario_dir, {
            "seed": 3, "target": {"base_url": sim.base_url, "models": ["fast", "slow", "fast-lora"]},
            "requests": {"inline": ["one two three four"]}, "sampling": {"max_tokens": 40},
            "load": {"concurrency": 1, "max_requests": 24},
        })
    run = result.run
    models = run.summary.models
    assert sorted(models) == ["fast", "fast-lora", "slow"]
    loaded = load_profile(profile)
    for name, tokens in (("fast", 12), ("slow", 12), ("fast-lora", 4)):
        part = models[name]
        assert part.requests.total == part.requests.ok == 8
        assert part.metric(OUTPUT_TOKENS).p50 == tokens  # the model's (or adapter's) output_len
        # alone in its engine (closed loop of one): a decode step per token, base + 1 sequence
        figures = predict(model_profile(loaded, name), 1, 8, tokens)
        expected = figures["itl_ms"]
        assert part.metric(ITL).p50 == pytest.approx(expected, rel=0.1), name
        assert part.metric(TPOT).p50 == pytest.approx(expected, rel=0.1), name
        # the first token comes out of the one step that holds the prefill (+ the client's own time)
        assert figures["ttft_ms"] <= part.metric(TTFT).p50 <= figures["ttft_ms"] * 1.2 + 2.0, name
    titles = [t.title for t in report_tables(run)]
    assert "Per model (ms)" in titles
    per_model = next(t for t in report_tables(run) if t.title == "Per model (ms)")
    assert [row[0] for row in per_model.rows] == ["fast", "fast-lora", "slow"]
    assert [row[2] for row in per_model.rows] == ["33.3%"] * 3
    figs = run_figures(run)
    for stem in ("model_cdf", "model_ladder"):
        for ax in figs[stem].axes:
            labels = {line.get_label().split(" (")[0] for line in ax.get_lines() if not line.get_label().startswith("_")}
            assert labels == {"fast", "slow", "fast-lora"}, (stem, labels)
    write_reports(run)
    report = (run.path / "report.md").read_text()
    assert "## Per model (ms)" in report and "![model_cdf](figures/model_cdf.png)" in report
    # compare: one table per model the runs share (here a run against itself: nothing differs)
    out = tmp_path / "cmp"
    assert main(["compare", str(run.path), str(run.path), "--out", str(out), "--resamples", "500"]) == 0
    text = (out / "compare-models.md").read_text()
    assert [line for line in text.splitlines() if line.startswith("## Model")] == [
        "## Model fast", "## Model fast-lora", "## Model slow"]
    assert "higher" not in text and "lower" not in text
    assert "model slow:" in capsys.readouterr().out


def test_an_unknown_model_is_a_404_error_record(scenario_dir):
    with start_sim(profile=_two_deployments(), seed=2) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url, "models": ["fast", "nope"]},
            "requests": {"inline": ["hi"]}, "sampling": {"max_tokens": 2},
            "load": {"concurrency": 1, "max_requests": 4},
        })
    requests = result.run.requests.sort_values("request_id")
    assert requests["model"].tolist() == ["fast", "nope"] * 2
    failed = requests[requests["model"] == "nope"]
    assert (failed["error_kind"] == "http_404").all()
    assert failed["error_message"].str.contains("The model `nope` does not exist.").all()
    assert result.run.summary.models["nope"].requests.ok == 0


def test_the_shipped_many_models_example_runs_against_the_simulator(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["run", str(REPO / "scenarios" / "many-models.yaml"), "--duration", "3", "--out", str(run_dir),
                 "--no-report", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["requests"]["ok"] == summary["requests"]["total"] > 0
    run = bench.load_run(run_dir)
    named = set(run.requests["model"])
    assert named <= {"sim-small", "sim-large", "sim-small-lora"} and "sim-small" in named
    assert set(summary["models"]) == named
