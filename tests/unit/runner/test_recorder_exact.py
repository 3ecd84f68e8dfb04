"""The recorder's exact bookkeeping: kept text, character counts, choice indexes, finish
reasons and messages, usage and server timings, on hand-built streams with known answers.

Written against mutants of bench/runner/recorder.py that survived the other recorder tests
(benchmarks/mutation.py); the survivors that cannot change any result are listed with their
reason in docs/mutation.md.
"""

from __future__ import annotations

import orjson
import pytest

from bench.records import CHUNK_KINDS
from bench.runner.recorder import StreamRecorder

DONE = b"data: [DONE]\n\n"


def ev(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def choice(d: dict | None = None, index: object = 0, finish: object = None, text: object = None) -> dict:
    out: dict = {"index": index, "finish_reason": finish}
    if d is not None:
        out["delta"] = d
    if text is not None:
        out["text"] = text
    return out


def fed(*reads: bytes, n: int = 1, keep_text: bool = False) -> StreamRecorder:
    rec = StreamRecorder(0.0, n=n)
    rec.keep_text = keep_text
    for i, data in enumerate(reads, start=1):
        rec.feed(float(i), data)
    rec.close(float(len(reads) + 1))
    return rec


def kinds(rec: StreamRecorder) -> list[str]:
    return [CHUNK_KINDS[k] for k in rec.chunks.kind]


# -- text and characters ---------------------------------------------------------------------


def test_kept_text_and_characters_of_chat_deltas():
    rec = fed(ev({"choices": [choice({"content": "ab"})]}), ev({"choices": [choice({"content": "cde"})]}),
              keep_text=True)
    assert rec.text() == "abcde" and rec.output_chars == 5


def test_text_is_not_kept_unless_asked():
    rec = fed(ev({"choices": [choice({"content": "ab"})]}), ev({"choices": [choice(text="cd")]}))
    assert rec.text_parts == [] and rec.output_chars == 4


def test_kept_text_and_characters_of_completions_text():
    rec = fed(ev({"choices": [choice(text="ab")]}), ev({"choices": [choice(text="cde")]}) + DONE, keep_text=True)
    assert kinds(rec) == ["content", "content"]
    assert rec.text() == "abcde" and rec.output_chars == 5


@pytest.mark.parametrize("text", ["", 5, None, []])
def test_completions_text_that_is_not_a_non_empty_string_is_no_token(text):
    rec = fed(ev({"choices": [{"index": 0, "text": text, "finish_reason": None}]}) + DONE, keep_text=True)
    assert kinds(rec) == ["other"] and rec.first_token_t is None
    assert rec.output_chars == 0 and rec.text() == ""


def test_content_parts_are_joined_without_separator():
    parts = [{"type": "text", "text": "ab"}, {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "c"}]
    rec = fed(ev({"choices": [choice({"content": parts})]}) + DONE, keep_text=True)
    assert kinds(rec) == ["content"] and rec.text() == "abc" and rec.output_chars == 3


def test_content_parts_without_text_are_no_token():
    rec = fed(ev({"choices": [choice({"content": [{"type": "image_url", "image_url": {"url": "x"}}]})]}) + DONE)
    assert kinds(rec) == ["other"] and rec.first_token_t is None


def test_only_choice_zero_text_is_kept_with_n2():
    both = {"choices": [choice({"content": "a"}, 0), choice({"content": "bb"}, 1)]}
    rec = fed(ev(both), ev({"choices": [choice(text="c", index=1)]}), ev({"choices": [choice(text="d", index=0)]}),
              n=2, keep_text=True)
    assert rec.text() == "ad" and rec.output_chars == 5


def test_text_with_a_lone_surrogate_comes_back_as_valid_utf8():
    # orjson refuses the lone surrogate; Python's json takes it; text() must be encodable.
    payload = b'{"choices": [{"index": 0, "delta": {"content": "\\ud800x"}}]}'
    rec = fed(b"data: " + payload + b"\n\n" + DONE, keep_text=True)
    assert rec.text() == "?x"
    rec.text().encode("utf-8")


# -- choices ---------------------------------------------------------------------------------


def test_a_choice_that_is_not_an_object_is_skipped():
    rec = fed(ev({"choices": ["junk", choice({"content": "x"})]}) + DONE)
    assert kinds(rec) == ["content"]


def test_n1_event_with_several_choices_takes_the_best_ranked_kind():
    rec = fed(ev({"choices": [choice({"content": "x"}), choice({"role": "assistant"})]}) + DONE)
    assert kinds(rec) == ["content"] and list(rec.chunks.choice) == [0]


@pytest.mark.parametrize("index", ["missing", "1", 1.0, None])
def test_n2_choice_without_an_integer_index_is_choice_zero(index):
    c = choice({"content": "x"}, finish="stop")
    if index == "missing":
        del c["index"]
    else:
        c["index"] = index
    rec = fed(ev({"choices": [c]}), n=2)
    assert list(rec.chunks.choice) == [0] and rec.finish_reasons == {0: "stop"}


def test_several_choices_without_output_are_one_row_of_the_first_best_ranked():
    # role ranks above other: the row is choice 0's role, whichever index is larger
    rec = fed(ev({"choices": [choice({"role": "assistant"}, 0), choice({}, 1, finish="stop")]}), n=2)
    assert kinds(rec) == ["role"] and list(rec.chunks.choice) == [0] and list(rec.chunks.tokens) == [-1]
    # equal rank: the first choice in the event, not the lowest index
    rec = fed(ev({"choices": [choice({"role": "assistant"}, 1), choice({"role": "assistant"}, 0)]}), n=2)
    assert kinds(rec) == ["role"] and list(rec.chunks.choice) == [1]


def test_first_token_of_an_event_with_several_choices():
    both = {"choices": [choice({"content": "x"}, 0), choice({"content": "y"}, 1)]}
    rec = fed(ev({"choices": [choice({"role": "assistant"}, 0), choice({"role": "assistant"}, 1)]}), ev(both),
              ev(both), n=2)
    assert rec.first_token_t == 2.0


# -- finish reasons and completeness ---------------------------------------------------------


def test_same_reason_on_every_choice_is_given_once():
    rec = fed(ev({"choices": [choice({"content": "x"}, 0, "stop"), choice({"content": "y"}, 1, "stop")]}), n=2)
    assert rec.finish_reason() == "stop"


@pytest.mark.parametrize(("reason", "text"), [(7, "7"), ({"type": 3}, "{'type': 3}"), (["stop"], "['stop']")])
def test_a_finish_reason_of_another_type_is_kept_as_text(reason, text):
    rec = fed(ev({"choices": [choice({"content": "x"}, finish=reason)]}) + DONE)
    assert rec.finish_reason() == text and rec.finish_messages == []


def test_a_finish_reason_object_message_is_cut_at_300_characters():
    reason = {"type": "abort", "message": "m" * 400}
    rec = fed(ev({"choices": [choice({"content": "x"}, finish=reason)]}) + DONE)
    assert rec.finish_messages == ["m" * 300]


def test_server_abort_message_exactly():
    rec = fed(ev({"choices": [choice({"content": "x"}, 0, "error"), choice({"content": "y"}, 1, "abort")]}), n=2)
    assert rec.incomplete() == ("server_abort", "the server cut the answer off (finish_reason abort, error)")
    said = fed(ev({"choices": [choice({"content": "x"}, finish={"type": "abort", "message": "gone"})]}))
    assert said.incomplete() == ("server_abort", "the server cut the answer off (finish_reason abort): gone")


def test_stream_dropped_message_exactly():
    rec = fed(ev({"choices": [choice({"content": "x"}, 0, "stop")]}), n=3)
    assert rec.incomplete() == ("stream_dropped", "stream ended without [DONE] with 1 of 3 choices finished")


@pytest.mark.parametrize("reason", ["abort", "ABORT", "Cancelled", "stop", "EOS"])
def test_known_and_cut_off_reasons_are_not_unknown(reason):
    assert fed(ev({"choices": [choice({"content": "x"}, finish=reason)]}) + DONE).unknown_finish_reasons() == set()


# -- usage and server timings ----------------------------------------------------------------


def test_server_timings_are_kept():
    timings = {"prompt_n": 4, "prompt_ms": 12.5, "predicted_n": 2, "predicted_ms": 30.0}
    rec = fed(ev({"choices": [choice({"content": "x"}, finish="stop")]}),
              ev({"choices": [], "timings": timings}) + DONE)
    assert rec.server_timings == timings


def test_usage_is_the_last_one_the_stream_gave():
    rec = fed(ev({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
              ev({"choices": [choice({"content": "x"}, finish="stop")],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 2}}) + DONE)
    assert rec.usage_tokens() == (3, 2)


def test_usage_chunks_per_choice_take_the_last_prompt_count():
    usages = [{"prompt_tokens": p, "completion_tokens": c} for p, c in ((10, 1), (11, 2), (12, 4))]
    rec = fed(*(ev({"choices": [], "usage": u}) for u in usages), n=3)
    assert rec.usage_tokens() == (12, 7)
    two = fed(*(ev({"choices": [], "usage": u}) for u in usages[:2]), n=2)
    assert two.usage_tokens() == (11, 3)


def test_usage_counts_that_are_not_integers_are_unknown():
    bad = {"prompt_tokens": "7", "completion_tokens": "2"}
    assert fed(ev({"choices": [], "usage": bad})).usage_tokens() == (None, None)
    per_choice = [{"prompt_tokens": "7", "completion_tokens": 1}, {"prompt_tokens": "7", "completion_tokens": 2}]
    assert fed(*(ev({"choices": [], "usage": u}) for u in per_choice), n=2).usage_tokens() == (None, 3)


def test_a_recorder_left_at_its_defaults():
    rec = StreamRecorder(0.0)
    rec.feed(1.0, ev({"choices": [choice({"content": "x"}, finish="stop")]}))
    rec.close(2.0)
    assert rec.incomplete() is None  # one choice by default: it finished, no [DONE] needed
    assert rec.text_parts == [] and rec.usage is None and rec.server_timings is None
    assert rec.usage_tokens() == (None, None)


@pytest.mark.parametrize("choices", [{"0": {"delta": {"content": "x"}}}, "x", 3])
def test_choices_that_are_not_a_list_are_no_choices(choices):
    rec = fed(ev({"choices": choices}) + DONE)
    assert kinds(rec) == ["other"] and rec.first_token_t is None


def test_running_usage_counts_only_on_output_chunks():
    # vLLM's continuous_usage_stats: every chunk carries the running completion count,
    # the role chunk and the finish chunk included; only output chunks carry tokens.
    def with_usage(d: dict, count: int, finish: str | None = None) -> bytes:
        return ev({"choices": [choice(d, finish=finish)], "usage": {"prompt_tokens": 5, "completion_tokens": count}})

    rec = fed(with_usage({"role": "assistant"}, 0), with_usage({"content": "a"}, 1),
              with_usage({"content": "bc"}, 3), with_usage({}, 3, finish="stop") + DONE)
    assert kinds(rec) == ["role", "content", "content", "other"]
    assert list(rec.chunks.tokens) == [-1, 1, 2, -1] and rec.usage_tokens() == (5, 3)
