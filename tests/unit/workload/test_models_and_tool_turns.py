"""The per-prompt model draw of a multi-model workload and the tool-result turns of a chat."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson

from bench.scenario.loader import validate_scenario
from bench.scenario.routing import ModelSplit
from bench.workload.requests import Workload
from bench.workload.turns import ModelPicker, tool_turn


def test_weighted_draws_follow_the_weights_and_the_seed():
    split = ModelSplit(("a", "b", "c"), (0.6, 0.3, 0.1))
    picker = ModelPicker(split, seed=5)
    many = [picker.pick() for _ in range(20000)]
    counts = Counter(many)
    assert abs(counts["a"] / 20000 - 0.6) < 0.015 and abs(counts["c"] / 20000 - 0.1) < 0.01
    again = ModelPicker(split, seed=5)
    assert [again.pick() for _ in range(200)] == many[:200]
    other = ModelPicker(split, seed=6)
    assert [other.pick() for _ in range(200)] != many[:200]
    assert ModelPicker(None, seed=5).pick() is None


def test_a_list_goes_in_turn():
    picker = ModelPicker(ModelSplit(("a", "b"), None), seed=1)
    assert [picker.pick() for _ in range(5)] == ["a", "b", "a", "b", "a"]


def test_tool_turn_appends_the_call_and_one_tool_message_per_call():
    history = ({"role": "user", "content": "q"},)
    calls = ({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
             {"id": None, "type": "function", "function": {"name": "g", "arguments": '{"x": 1}'}})
    out = tool_turn(history, "", calls, "R")
    assert out[0] == history[0]
    assert out[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "call_1", "type": "function", "function": {"name": "g", "arguments": '{"x": 1}'}}]}
    assert out[2:] == ({"role": "tool", "tool_call_id": "c1", "content": "R"},
                       {"role": "tool", "tool_call_id": "call_1", "content": "R"})


def test_a_chat_turn_with_tool_calls_is_followed_by_the_results_then_the_next_user_turn(tmp_path: Path):
    scenario = validate_scenario({
        "target": {"models": ["m1", "m2"]},
        "requests": {"inline": ["first", "second"], "order": "cycle", "conversation": {"turns": 3, "tool_result": "OK"},
                     "tools": [{"type": "function", "function": {"name": "f"}}]},
        "load": {"concurrency": 1, "max_requests": 9}}, "s.yaml")
    workload = Workload(scenario, tmp_path / "s.yaml", "m1")
    spec = workload.next_spec()
    assert spec.model == "m1" and orjson.loads(spec.body)["model"] == "m1"
    call = {"id": "c9", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    nxt = workload.follow_up(spec, "", (call,))
    assert nxt is not None
    tool_spec = nxt[0]
    body = orjson.loads(tool_spec.body)
    assert tool_spec.turn == 1 and tool_spec.model == "m1" and body["model"] == "m1"  # the chat keeps its model
    assert body["tools"] == [{"type": "function", "function": {"name": "f"}}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool"]
    assert body["messages"][-1] == {"role": "tool", "tool_call_id": "c9", "content": "OK"}
    # the tool turn took one of the turns left: one more request (the answer to the results) ends the chat
    last = workload.follow_up(tool_spec, "done", ())
    assert last is not None and last[0].turn == 2
    roles = [m["role"] for m in orjson.loads(last[0].body)["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    assert workload.follow_up(last[0], "bye", ()) is None
    assert workload.next_spec().model == "m2"  # the next chat, the next model in turn
