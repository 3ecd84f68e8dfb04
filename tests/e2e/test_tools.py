"""Tool definitions and tool-call answers end to end against the simulator: the exact bodies it
received (tools and tool_choice as written), tool-call-only answers timed against its ground
truth, multi-turn chats answering calls with the canned tool result, and the shipped example."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from benchtest import run_in_process, sim_truth

import bench
from bench.commands.cli import main
from bench.sim import start_sim

REPO = Path(__file__).resolve().parents[2]
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "web_search", "parameters": {"type": "object", "properties": {}}},
     "strict": True},
]


def _profile(**extra):
    return {"models": ["sim-t"], "record_bodies": True, "tool_call_probability": 1.0,
            "output_len": {"dist": "fixed", "mean": 10}, **extra}


def _chats(truth: dict) -> list[dict]:
    return sorted((t for t in truth.values() if t["endpoint"] == "chat"), key=lambda t: t["received_s"])


def test_tools_and_tool_choice_are_sent_as_written(scenario_dir):
    choice = {"type": "function", "function": {"name": "web_search"}}
    with start_sim(profile=_profile(), seed=1) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url},
            "requests": {"inline": ["weather in Paris?", "search for cats"], "order": "cycle",
                         "tools": TOOLS, "tool_choice": choice},
            "sampling": {"max_tokens": 20},
            "load": {"concurrency": 1, "max_requests": 2},
        })
        truth = sim_truth(sim.root_url)
    chats = _chats(truth)
    assert [t["body"] for t in chats] == [
        {"model": "sim-t", "max_tokens": 20, "stream": True, "stream_options": {"include_usage": True},
         "tools": TOOLS, "tool_choice": choice, "messages": [{"role": "user", "content": prompt}]}
        for prompt in ("weather in Paris?", "search for cats")]
    assert [t["tool_call"] for t in chats] == ["web_search", "web_search"]  # the named tool
    requests = result.run.requests
    assert (requests["finish_reason"] == "tool_calls").all() and (requests["status"] == "ok").all()


def test_a_tool_call_only_answer_is_timed_like_text_against_the_truth(scenario_dir):
    profile = _profile(decode_ms_base=15.0, decode_ms_per_seq=0.0, prefill_ms_per_token=0.0)
    with start_sim(profile=profile, seed=2) as sim:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": sim.base_url},
            "requests": {"inline": ["call something"], "tools": TOOLS[:1]},
            "sampling": {"max_tokens": 40},
            "load": {"concurrency": 2, "max_requests": 8},
        })
        truth = sim_truth(sim.root_url)
    run = result.run
    t0 = run.manifest.t0_perf_counter
    chunks = run.chunks
    for row in run.requests.itertuples():
        true = truth[row.server_request_id]
        assert true["tool_call"] == "get_weather" and true["finish_reason"] == "tool_calls"
        mine = chunks[chunks["request_id"] == row.request_id]
        assert set(mine["kind"]) == {"role", "tool_call", "usage"}  # no text at all
        calls = mine[mine["kind"] == "tool_call"]["t_s"].to_numpy() + t0
        writes = np.asarray(true["chunk_write_times_s"])
        assert len(calls) == len(writes) == 10 == row.output_tokens  # one delta per token, as the usage says
        assert row.finish_reason == "tool_calls" and row.token_source == "usage"
        # TTFT is the first tool-call delta (the name), against the server's own clock
        assert row.ttft_ms == pytest.approx((calls[0] - t0 - row.sent_s) * 1e3)
        assert abs(row.ttft_ms - (writes[0] - true["received_s"]) * 1e3) < 5.0
        assert np.abs(np.diff(calls) - np.diff(writes)).max() * 1e3 < 5.0
        assert row.tpot_ms == pytest.approx((calls[-1] - calls[0]) * 1e3 / 9)
    summary = run.summary.to_json()
    assert summary["itl_ms"]["count"] == 8 * 9
    assert summary["itl_ms"]["p50"] == pytest.approx(15.0, rel=0.1)  # one 15 ms decode step per delta


def test_multi_turn_chats_answer_tool_calls_with_the_canned_result(scenario_dir):
    canned = '{"temperature_c": 14}'
    with start_sim(profile=_profile(tool_call_probability=0.5), seed=3) as sim:
        result = run_in_process(scenario_dir, {
            "seed": 8, "target": {"base_url": sim.base_url},
            "requests": {"inline": ["first question", "second question", "third question"],
                         "tools": TOOLS, "conversation": {"turns": 4, "tool_result": canned}},
            "sampling": {"max_tokens": 30},
            "load": {"concurrency": 1, "max_requests": 12},
        })
        truth = sim_truth(sim.root_url)
    requests = result.run.requests.sort_values("request_id")
    assert (requests["status"] == "ok").all() and requests["turn"].tolist() == [0, 1, 2, 3] * 3
    by_id = {t["id"]: t for t in truth.values()}
    answers = [by_id[i] for i in requests["server_request_id"]]
    called = [a["tool_call"] is not None for a in answers]
    assert 0 < sum(called) < len(called)  # both kinds of answer occur
    for k, (this, nxt) in enumerate(itertools.pairwise(answers)):
        if requests["turn"].iloc[k + 1] == 0:
            continue  # a new chat
        sent = nxt["body"]["messages"]
        assert sent[: len(this["body"]["messages"])] == this["body"]["messages"]  # the history, resent
        if this["tool_call"] is None:
            assert sent[-2]["role"] == "assistant" and "tool_calls" not in sent[-2] and sent[-1]["role"] == "user"
            continue
        assistant, tool = sent[-2], sent[-1]
        (call,) = assistant["tool_calls"]
        assert call["type"] == "function" and call["function"]["name"] == this["tool_call"]
        assert call["id"].startswith("chatcmpl-tool-")
        assert json.loads(call["function"]["arguments"])["text"]  # the streamed fragments make one JSON object
        assert tool == {"role": "tool", "tool_call_id": call["id"], "content": canned}


def test_the_shipped_tools_example_runs_against_the_simulator(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["run", str(REPO / "scenarios" / "tools.yaml"), "--duration", "3", "--out", str(run_dir),
                 "--no-report", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["requests"]["ok"] == summary["requests"]["total"] > 0
    run = bench.load_run(run_dir)
    assert "tool_calls" in set(run.requests["finish_reason"])
    assert (run.chunks["kind"] == "tool_call").any()
    assert summary["ttft_ms"]["count"] == summary["requests"]["ok"]
