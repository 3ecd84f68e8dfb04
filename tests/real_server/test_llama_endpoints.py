"""The embeddings and Responses endpoints against a real llama.cpp server bench launches
(tier `-m real_server`). llama.cpp serves /v1/embeddings when started with `--embeddings`
(mean pooling over the shipped Gemma 3 270M: not an embedding model, but the endpoint and
its usage are real) and streams /v1/responses as typed events. 4 requests per run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_llama_smoke import llama_command, llama_paths

from bench.commands.run import run_scenario
from bench.commands.rundir import RunOptions
from bench.scenario.loader import load_scenario
from bench.target.launch import free_port

pytestmark = pytest.mark.real_server

PROMPTS = ["The capital of France is", "Once upon a time, there was a", "Water boils at",
           "The three primary colors are"]


def _run(tmp_path: Path, endpoint: str, requests: dict, sampling: dict):
    port = free_port()
    server, model = llama_paths()
    data = {
        "name": endpoint, "seed": 3,
        "target": {"base_url": f"http://127.0.0.1:{port}/v1", "model": "gemma3-270m", "endpoint": endpoint,
                   "launch": {"command": [*llama_command(server, model, port), "--embeddings", "--pooling", "mean"],
                              "ready_timeout_s": 120},
                   "metrics": {"enabled": False}},
        "requests": {"inline": PROMPTS, "order": "cycle", **requests},
        "sampling": sampling,
        "load": {"concurrency": 1, "max_requests": 4},
    }
    path = tmp_path / f"{endpoint}.json"
    path.write_text(json.dumps(data))
    return run_scenario(load_scenario(path), RunOptions(scenario_path=path, out_dir=tmp_path / endpoint,
                                                        show_progress=False)).run


def test_llama_embeddings(tmp_path):
    run = _run(tmp_path, "embeddings", {"batch": 2}, {})
    requests = run.requests
    assert (requests["status"] == "ok").all(), requests["error_message"].tolist()
    assert (requests["inputs"] == 2).all() and (requests["prompt_tokens"] > 4).all()
    assert requests["e2e_ms"].notna().all() and requests["ttft_ms"].isna().all()
    thr = run.summary.throughput
    assert thr.inputs_per_s == pytest.approx(8 / thr.window_s) and thr.output_tokens_per_s is None


def test_llama_responses(tmp_path):
    run = _run(tmp_path, "responses", {}, {"max_tokens": 16, "temperature": 0.8, "extra_body": {"seed": 5}})
    requests = run.requests
    assert (requests["status"] == "ok").all(), requests["error_message"].tolist()
    assert (requests["token_source"] == "usage").all() and (requests["output_tokens"] <= 16).all()
    assert (requests["output_tokens"] > 0).all() and requests["prompt_tokens"].notna().all()
    assert all(not math.isnan(v) and v > 0 for v in requests["ttft_ms"])
    assert requests["server_prompt_ms"].notna().all()  # llama.cpp's timings, from response.completed


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_llama_tool_call_request(tmp_path):
    """Chat requests carrying tools with tool_choice required (llama.cpp needs --jinja for
    them): every answer is recorded as the server states it, a tool call (finish_reason
    tool_calls, tool_call chunks timed like text) or text. The shipped 270M model answered
    in text (finish_reason length) when this was written."""
    port = free_port()
    server, model = llama_paths()
    command = [arg for arg in llama_command(server, model, port) if arg not in ("--no-jinja",)]
    data = {
        "name": "tools", "seed": 3,
        "target": {"base_url": f"http://127.0.0.1:{port}/v1", "model": "gemma3-270m",
                   "launch": {"command": [*command, "--jinja"], "ready_timeout_s": 120},
                   "metrics": {"enabled": False}},
        "requests": {"inline": ["What is the weather in Paris? Use the tool."], "tools": TOOLS,
                     "tool_choice": "required"},
        "sampling": {"max_tokens": 48, "temperature": 0.0},
        "load": {"concurrency": 1, "max_requests": 3},
    }
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(data))
    run = run_scenario(load_scenario(path), RunOptions(scenario_path=path, out_dir=tmp_path / "tools",
                                                       show_progress=False)).run
    requests = run.requests
    assert (requests["status"] == "ok").all(), requests["error_message"].tolist()
    chunks = run.chunks
    for row in requests.itertuples():
        kinds = set(chunks[chunks["request_id"] == row.request_id]["kind"].astype(str))
        print(row.request_id, row.finish_reason, sorted(kinds))
        if row.finish_reason == "tool_calls":
            assert "tool_call" in kinds  # the call's deltas are the output, timed like text
        else:
            assert "content" in kinds
        assert row.ttft_ms > 0 and row.output_tokens > 0
