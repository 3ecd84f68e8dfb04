"""The answers' generated text, kept when the scenario counts tokens (`tokens:`): every output
kind (reasoning, content, tool calls, refusals, completions text), per choice, in arrival
order; nothing kept otherwise. The record and the store carry it; the derived requests do not."""

from __future__ import annotations

import orjson

from bench.runner.recorder import StreamRecorder
from bench.runner.responses import ResponsesRecorder
from bench.runner.unary import EmbeddingsReader


def _chunk(index: int, delta: dict | None = None, text: str | None = None, finish: str | None = None) -> bytes:
    choice: dict = {"index": index, "finish_reason": finish}
    if delta is not None:
        choice["delta"] = delta
    else:
        choice["text"] = text
    return b"data: " + orjson.dumps({"choices": [choice]}) + b"\n\n"


STREAM = [
    _chunk(0, {"role": "assistant", "content": ""}),
    _chunk(0, {"reasoning_content": "Think"}),
    _chunk(1, {"reasoning": " hard"}),
    _chunk(0, {"content": " then"}),
    _chunk(1, {"content": [{"type": "text", "text": " answer"}]}),
    _chunk(0, {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{\"a\""}}]}),
    _chunk(0, {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
    _chunk(1, {"refusal": " no"}, finish="stop"),
    _chunk(0, {}, finish="tool_calls"),
    b"data: [DONE]\n\n",
]


def _recorded(keep: bool, n: int = 2) -> StreamRecorder:
    recorder = StreamRecorder(t_origin=0.0, n=n)
    recorder.keep_output = keep
    for i, event in enumerate(STREAM):
        recorder.feed(0.01 * i, event)
    recorder.close(1.0)
    return recorder


def test_every_output_kind_of_every_choice_is_kept_in_order():
    assert _recorded(True).output_texts() == ("Think thenf{\"a\": 1}", " hard answer no")


def test_nothing_is_kept_unless_asked():
    recorder = _recorded(False)
    assert recorder.output_texts() is None
    assert recorder.output_chars == len(" then answer")  # measured the same either way
    assert _recorded(True).chunks.kind == recorder.chunks.kind


def test_a_choice_that_generated_nothing_is_an_empty_text():
    recorder = StreamRecorder(t_origin=0.0, n=3)
    recorder.keep_output = True
    recorder.feed(0.1, _chunk(1, text=" only"))
    recorder.feed(0.2, b"data: [DONE]\n\n")
    assert recorder.output_texts() == ("", " only", "")


def test_the_responses_api_and_embeddings():
    recorder = ResponsesRecorder(t_origin=0.0)
    recorder.keep_output = True
    for i, (kind, delta) in enumerate([("response.reasoning_text.delta", "Hm"), ("response.output_text.delta", " yes"),
                                       ("response.output_text.delta", "")]):
        recorder.feed(0.1 * i, b"data: " + orjson.dumps({"type": kind, "delta": delta}) + b"\n\n")
    assert recorder.output_texts() == ("Hm yes",)
    assert EmbeddingsReader(0.0, 1).output_texts() is None
