"""Every `target.endpoint` end to end against the simulator (a real server process), with the
request bodies it received checked exactly (`record_bodies`) and token counts against its truth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from benchtest import run_in_process, sim_truth

import bench
from bench.commands.cli import main
from bench.sim import start_sim

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["the quick brown fox", "jumps over the lazy dog today", "one two three", "alpha beta"]


def _profile(**extra):
    return {"models": ["sim-e"], "record_bodies": True, "output_len": {"dist": "fixed", "mean": 6}, **extra}


def _bodies(truth: dict, endpoint: str) -> list[dict]:
    return [t["body"] for t in sorted(truth.values(), key=lambda t: t["received_s"]) if t["endpoint"] == endpoint]


def test_embeddings_send_batches_and_count_inputs_and_input_tokens_exactly(scenario_dir):
    profile = _profile(embedding_ms_per_input=4.0, embedding_ms_per_token=0.5)
    with start_sim(profile=profile, seed=3) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url, "endpoint": "embeddings"},
            "requests": {"inline": PROMPTS, "order": "cycle", "batch": 2},
            "sampling": {"extra_body": {"encoding_format": "float"}},
            "load": {"concurrency": 1, "max_requests": 6},
        })
        truth = sim_truth(sim.root_url)
    bodies = _bodies(truth, "embeddings")
    # draw i takes prompt i (cycling) and the one after it; the exact bodies, in order
    expected = [{"model": "sim-e", "encoding_format": "float", "input": [PROMPTS[i % 4], PROMPTS[(i + 1) % 4]]}
                for i in range(6)]
    assert bodies == expected
    run = result.run
    requests = run.requests.sort_values("request_id")
    assert (requests["status"] == "ok").all() and (requests["inputs"] == 2).all()
    words = [len(b["input"][0].split()) + len(b["input"][1].split()) for b in expected]
    assert requests["prompt_tokens"].tolist() == words  # usage.prompt_tokens, the server's count
    by_id = {t["id"]: t for t in truth.values()}
    for row in requests.itertuples():
        true = by_id[row.server_request_id]
        assert true["prompt_tokens"] == row.prompt_tokens and true["n"] == 2
        # E2E covers at least the server's own time for the request (profile: 4 ms/input, 0.5 ms/token)
        assert row.e2e_ms >= 8.0 + 0.5 * row.prompt_tokens
        assert row.e2e_ms >= (true["completed_s"] - true["received_s"]) * 1e3
        assert math.isnan(row.ttft_ms) and math.isnan(row.tpot_ms) and row.token_source == "none"
    summary = run.summary
    thr = summary.throughput
    assert thr.inputs_per_s == pytest.approx(12 / thr.window_s)
    assert thr.input_tokens_per_s == pytest.approx(sum(words) / thr.window_s)
    assert thr.output_tokens_per_s is None  # absent, not zero
    assert summary.to_json()["ttft_ms"]["count"] == 0 and summary.to_json()["itl_ms"]["count"] == 0
    assert summary.to_json()["e2e_ms"]["count"] == 6
    assert len(run.chunks) == 0  # nothing streamed


def test_responses_stream_with_reasoning_and_usage_from_the_completed_event(scenario_dir):
    with start_sim(profile=_profile(reasoning_tokens=3), seed=4) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url, "endpoint": "responses"},
            "requests": {"inline": PROMPTS[:2], "order": "cycle"},
            "sampling": {"max_tokens": 20, "temperature": 0.5, "extra_body": {"ignore_eos": True}},
            "load": {"concurrency": 2, "max_requests": 4},
        })
        truth = sim_truth(sim.root_url)
    bodies = _bodies(truth, "responses")
    assert sorted(bodies, key=json.dumps) == sorted(
        [{"model": "sim-e", "temperature": 0.5, "max_output_tokens": 20, "ignore_eos": True, "stream": True,
          "input": PROMPTS[i % 2]} for i in range(4)], key=json.dumps)
    run = result.run
    chunks = run.chunks
    by_id = {t["id"]: t for t in truth.values()}
    for row in run.requests.itertuples():
        true = by_id[row.server_request_id]
        assert row.status == "ok" and row.finish_reason == "max_output_tokens"
        assert row.output_tokens == true["output_tokens"] == 20 and row.prompt_tokens == true["prompt_tokens"]
        mine = chunks[chunks["request_id"] == row.request_id]
        reasoning = mine[mine["kind"] == "reasoning"]["t_s"]
        content = mine[mine["kind"] == "content"]["t_s"]
        assert len(reasoning) == 3 and len(content) == 17  # one delta per token on this profile
        assert len(reasoning) + len(content) == len(true["chunk_write_times_s"])
        # the first token is the first reasoning delta
        assert row.first_token_s == reasoning.min() < content.min()
        assert row.ttft_ms == pytest.approx((reasoning.min() - row.sent_s) * 1e3)
    summary = run.summary.to_json()
    assert summary["ttft_ms"]["count"] == 4 and summary["itl_ms"]["count"] == 4 * 19
    assert summary["requests"] == {"total": 4, "ok": 4, "errors": {}}


def test_an_embeddings_error_is_an_error_with_the_servers_status_and_message(scenario_dir):
    with start_sim(profile=_profile(faults=["http_503:every=3,retry_after=2"]), seed=7) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url, "endpoint": "embeddings"},
            "requests": {"inline": PROMPTS},
            "load": {"concurrency": 1, "max_requests": 6},
        })
        truth = sim_truth(sim.root_url)
    requests = result.run.requests.sort_values("request_id")
    failed = requests[requests["status"] == "error"]
    assert len(failed) == 2 and (failed["error_kind"] == "http_503").all()
    assert (failed["error_message"] == "Service unavailable (simulated fault).").all()
    assert (failed["retry_after_s"] == 2.0).all() and failed["e2e_ms"].isna().all()
    assert sorted(t["status"] for t in truth.values()) == [200, 200, 200, 200, 503, 503]
    assert result.run.summary.requests.errors == {"http_503": 2}
    assert result.run.summary.throughput.inputs_per_s == pytest.approx(4 / result.run.summary.throughput.window_s)


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_chat_and_completions_send_the_exact_bodies_and_count_tokens_as_the_server(scenario_dir, endpoint):
    with start_sim(profile=_profile(), seed=6) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url, "endpoint": endpoint},
            "requests": {"inline": PROMPTS[:2], "order": "cycle"},
            "sampling": {"max_tokens": 9, "extra_body": {"ignore_eos": True}},
            "load": {"concurrency": 1, "max_requests": 2},
        })
        truth = sim_truth(sim.root_url)
    prompt = ({"messages": [{"role": "user", "content": p}]} if endpoint == "chat" else {"prompt": p} for p in PROMPTS)
    assert _bodies(truth, endpoint) == [
        {"model": "sim-e", "max_tokens": 9, "ignore_eos": True, "stream": True,
         "stream_options": {"include_usage": True}, **fields} for fields in list(prompt)[:2]]
    by_id = {t["id"]: t for t in truth.values()}
    for row in result.run.requests.itertuples():
        true = by_id[row.server_request_id]
        assert row.status == "ok" and row.output_tokens == true["output_tokens"] == 9
        assert row.prompt_tokens == true["prompt_tokens"] and row.inputs is pd.NA and math.isnan(row.body_s)


def test_a_responses_stream_cut_before_its_end_is_an_error(scenario_dir):
    with start_sim(profile=_profile(faults=["no_done:every=2"]), seed=5) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url, "endpoint": "responses"},
            "requests": {"inline": PROMPTS[:1]},
            "load": {"concurrency": 1, "max_requests": 4},
        })
    errors = result.run.requests["error_kind"].value_counts().to_dict()
    assert errors == {"stream_dropped": 2}


@pytest.mark.parametrize("name", ["embeddings", "responses"])
def test_the_shipped_example_runs_against_the_simulator(tmp_path, capsys, name):
    run_dir = tmp_path / "run"
    code = main(["run", str(REPO / "scenarios" / f"{name}.yaml"), "--duration", "2", "--out", str(run_dir),
                 "--no-report", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["requests"]["ok"] == summary["requests"]["total"] > 0
    run = bench.load_run(run_dir)
    assert run.manifest.scenario["target"]["endpoint"] == name
    if name == "embeddings":
        assert summary["throughput"]["inputs_per_s"] == pytest.approx(8 * summary["throughput"]["requests_per_s"])
        assert summary["ttft_ms"]["count"] == 0 and summary["e2e_ms"]["count"] == summary["requests"]["ok"]
    else:
        assert summary["ttft_ms"]["count"] == summary["requests"]["ok"]
        assert (run.requests["token_source"] == "usage").all()
