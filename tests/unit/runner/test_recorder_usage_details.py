"""Exact usage details and tool-call assembly on hand-built streams: reasoning and cached
tokens from one usage or summed over llama.cpp's per-choice usage chunks, values that are not
counts, and tool calls assembled from fragments in every shape servers send them.

Written against mutants of bench/runner/recorder.py that survived the other recorder tests
(benchmarks/mutation.py); equivalent survivors are listed in docs/mutation.md.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_recorder_exact import ev, fed

from bench.records import CHUNK_KINDS


def usage_chunk(completion: Any, prompt: Any = 10, **details: Any) -> bytes:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    usage.update(details)
    return ev({"choices": [], "usage": usage})


def content(text: str = "x", index: int = 0, finish: str | None = None, **extra: Any) -> bytes:
    event: dict[str, Any] = {"choices": [{"index": index, "delta": {"content": text}, "finish_reason": finish}]}
    event.update(extra)
    return ev(event)


# -- reasoning tokens --------------------------------------------------------------------------


def reasoning(count: Any) -> dict[str, Any]:
    return {"completion_tokens_details": {"reasoning_tokens": count}}


def test_reasoning_tokens_are_summed_over_per_choice_usage_chunks():
    rec = fed(content(index=0, finish="stop"), content(index=1, finish="stop"),
              usage_chunk(5, **reasoning(3)), usage_chunk(7, **reasoning(4)), n=2)
    assert rec.reasoning_tokens() == 7
    assert rec.usage_tokens() == (10, 12)


def test_reasoning_tokens_are_unknown_when_one_choice_does_not_say():
    rec = fed(content(index=0, finish="stop"), content(index=1, finish="stop"),
              usage_chunk(5, **reasoning(3)), usage_chunk(7), n=2)
    assert rec.reasoning_tokens() is None


def test_reasoning_tokens_from_a_usage_riding_on_a_content_chunk():
    # vLLM's continuous usage: the usage comes with choices, never as a usage-only chunk
    rec = fed(content("a", usage={"prompt_tokens": 4, "completion_tokens": 1}),
              content("b", finish="stop", usage={"prompt_tokens": 4, "completion_tokens": 2, **reasoning(1)}))
    assert rec.reasoning_tokens() == 1
    assert rec.usage_tokens() == (4, 2)


@pytest.mark.parametrize("value", [True, "3", 2.0, None])
def test_a_reasoning_count_that_is_not_an_integer_is_unknown(value):
    assert fed(content(finish="stop"), usage_chunk(2, **reasoning(value))).reasoning_tokens() is None


def test_reasoning_details_that_are_not_an_object_are_unknown():
    rec = fed(content(finish="stop"), usage_chunk(2, completion_tokens_details=[1]))
    assert rec.reasoning_tokens() is None


def test_no_usage_no_reasoning_tokens():
    assert fed(content(finish="stop")).reasoning_tokens() is None


# -- cached tokens -----------------------------------------------------------------------------


def cached(count: Any) -> dict[str, Any]:
    return {"prompt_tokens_details": {"cached_tokens": count}}


def test_cached_tokens_come_from_the_last_usage_chunk():
    # llama.cpp with n > 1: one usage chunk per choice, the prompt (and its cache) shared
    rec = fed(content(index=0, finish="stop"), content(index=1, finish="stop"),
              usage_chunk(5, **cached(0)), usage_chunk(7, **cached(6)), n=2)
    assert rec.cached_tokens() == 6


def test_cached_tokens_from_a_usage_riding_on_a_content_chunk():
    rec = fed(content("a", finish="stop", usage={"prompt_tokens": 9, "completion_tokens": 1, **cached(8)}))
    assert rec.cached_tokens() == 8


@pytest.mark.parametrize("value", [False, "8", 8.0])
def test_a_cached_count_that_is_not_an_integer_is_unknown(value):
    assert fed(content(finish="stop"), usage_chunk(1, **cached(value))).cached_tokens() is None


def test_zero_cached_tokens_is_a_count():
    assert fed(content(finish="stop"), usage_chunk(1, **cached(0))).cached_tokens() == 0


def test_no_usage_no_cached_tokens():
    assert fed(content(finish="stop")).cached_tokens() is None


# -- usage tokens ------------------------------------------------------------------------------


def test_per_choice_usages_with_a_missing_completion_fall_back_to_the_last_usage():
    rec = fed(content(index=0, finish="stop"), content(index=1, finish="stop"),
              usage_chunk(5, prompt=3), usage_chunk(None, prompt=4), n=2)
    assert rec.usage_tokens() == (4, None)


def test_per_choice_usages_without_a_prompt_count():
    rec = fed(content(index=0, finish="stop"), content(index=1, finish="stop"),
              usage_chunk(5, prompt="x"), usage_chunk(6, prompt=None), n=2)
    assert rec.usage_tokens() == (None, 11)


# -- tool calls --------------------------------------------------------------------------------


def calls(*deltas: Any, index: int = 0) -> bytes:
    return ev({"choices": [{"index": index, "delta": {"tool_calls": list(deltas)}, "finish_reason": None}]})


def call(name: str, arguments: str, id_: str | None, type_: str = "function") -> dict[str, Any]:
    return {"id": id_, "type": type_, "function": {"name": name, "arguments": arguments}}


def test_calls_without_an_index_are_numbered_in_arrival_order():
    rec = fed(calls({"id": "a", "function": {"name": "f", "arguments": "{}"}}),
              calls({"id": "b", "function": {"name": "g", "arguments": "[]"}}), keep_text=True)
    assert rec.tool_calls() == (call("f", "{}", "a"), call("g", "[]", "b"))


def test_a_non_integer_index_is_call_zero():
    rec = fed(calls({"index": "0", "id": "a", "function": {"name": "f", "arguments": "{"}}),
              calls({"index": 0, "function": {"arguments": "}"}}), keep_text=True)
    assert rec.tool_calls() == (call("f", "{}", "a"),)


def test_calls_are_returned_in_index_order_whatever_their_arrival():
    rec = fed(calls({"index": 1, "id": "b", "function": {"name": "g"}}),
              calls({"index": 0, "id": "a", "function": {"name": "f"}}), keep_text=True)
    assert [c["id"] for c in rec.tool_calls()] == ["a", "b"]


def test_the_first_name_stays_and_id_and_type_take_the_latest_string():
    rec = fed(calls({"index": 0, "function": {"name": "first", "arguments": "1"}}),
              calls({"index": 0, "id": "late", "type": "custom", "function": {"name": "second", "arguments": "2"}}),
              calls({"index": 0, "id": 5, "type": None, "function": {"name": None, "arguments": None}}),
              keep_text=True)
    assert rec.tool_calls() == (call("first", "12", "late", "custom"),)


def test_a_call_with_no_id_keeps_none_and_the_default_type():
    rec = fed(calls({"index": 0, "function": {"name": "f", "arguments": "{}"}}), keep_text=True)
    assert rec.tool_calls() == (call("f", "{}", None),)


def test_fragments_that_are_not_objects_are_skipped():
    rec = fed(calls("junk", 3, {"index": 0, "id": "a", "function": "not an object"},
                    {"index": 0, "function": {"name": "f", "arguments": "{}"}}), keep_text=True)
    assert rec.tool_calls() == (call("f", "{}", "a"),)


def test_tool_calls_that_are_not_a_list_are_a_tool_call_chunk_without_calls():
    rec = fed(ev({"choices": [{"index": 0, "delta": {"tool_calls": {"id": "a"}}}]}), keep_text=True)
    assert rec.tool_calls() == ()
    assert [CHUNK_KINDS[k] for k in rec.chunks.kind] == ["tool_call"]


def test_only_choice_zeros_calls_are_assembled():
    rec = fed(calls({"index": 0, "id": "b", "function": {"name": "g", "arguments": "{}"}}, index=1),
              calls({"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}}, index=0),
              n=2, keep_text=True)
    assert rec.tool_calls() == (call("f", "{}", "a"),)


def test_text_of_choice_one_is_not_kept():
    rec = fed(content("one", index=1), content("zero", index=0), n=2, keep_text=True)
    assert rec.text() == "zero" and rec.output_chars == 7


# -- which usage speaks ------------------------------------------------------------------------


def test_a_usage_on_a_later_content_chunk_replaces_the_usage_chunk_before_it():
    first = {"prompt_tokens": 3, "completion_tokens": 1, **cached(1), **reasoning(1)}
    later = {"prompt_tokens": 3, "completion_tokens": 2, **cached(2), **reasoning(2)}
    rec = fed(content("a"), ev({"choices": [], "usage": first}), content("b", finish="stop", usage=later))
    assert (rec.usage_tokens(), rec.cached_tokens(), rec.reasoning_tokens()) == ((3, 2), 2, 2)


@pytest.mark.parametrize("junk", ["n/a", [1], 7])
def test_a_usage_that_is_not_an_object_is_not_usage(junk):
    rec = fed(content("a", finish="stop"), ev({"choices": [], "usage": junk}), ev({"choices": [], "usage": junk}),
              usage_chunk(4, prompt=2, **cached(1), **reasoning(2)))
    assert [CHUNK_KINDS[k] for k in rec.chunks.kind] == ["content", "other", "other", "usage"]
    assert (rec.usage_tokens(), rec.cached_tokens(), rec.reasoning_tokens()) == ((2, 4), 1, 2)


@pytest.mark.parametrize("junk", [5, "call", True])
def test_tool_calls_that_are_a_scalar_are_a_chunk_without_calls(junk):
    rec = fed(ev({"choices": [{"index": 0, "delta": {"tool_calls": junk}}]}), keep_text=True)
    assert rec.tool_calls() == ()
    assert [CHUNK_KINDS[k] for k in rec.chunks.kind] == ["tool_call"]
