"""Streamed tool calls: measured like text (tool_call chunks are output) and, when a chat
keeps its replies, assembled into the calls its next turn answers."""

from __future__ import annotations

import orjson

from bench.records import CHUNK_KINDS
from bench.runner.recorder import StreamRecorder


def _event(delta: dict, finish: str | None = None) -> bytes:
    return b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"


def _call(**fields) -> dict:
    return {"tool_calls": [fields]}


STREAM = [
    _event({"role": "assistant", "content": ""}),
    _event(_call(index=0, id="call_a", type="function", function={"name": "get_weather"})),
    _event(_call(index=0, function={"arguments": '{"city": '})),
    _event(_call(index=0, function={"arguments": '"Paris"}'})),
    _event(_call(index=1, id="call_b", type="function", function={"name": "web_search", "arguments": "{}"})),
    _event({}, "tool_calls"),
    b"data: [DONE]\n\n",
]


def test_tool_call_deltas_are_output_chunks_and_are_assembled_when_kept():
    rec = StreamRecorder(0.0)
    rec.keep_text = True
    for i, data in enumerate(STREAM):
        rec.feed(1.0 + i, data)
    rec.close(10.0)
    assert [CHUNK_KINDS[k] for k in rec.chunks.kind] == ["role", "tool_call", "tool_call", "tool_call", "tool_call",
                                                         "other"]
    assert rec.first_token_t == 2.0  # the first delta of the call (its name)
    assert rec.finish_reason() == "tool_calls" and rec.incomplete() is None
    assert rec.text() == ""
    assert rec.tool_calls() == (
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "web_search", "arguments": "{}"}},
    )


def test_tool_calls_are_not_kept_unless_asked():
    rec = StreamRecorder(0.0)
    for data in STREAM:
        rec.feed(1.0, data)
    assert rec.tool_calls() == ()
    assert sum(CHUNK_KINDS[k] == "tool_call" for k in rec.chunks.kind) == 4
