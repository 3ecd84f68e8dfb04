"""Choices: n=1 whatever the chunks' index says; n=2 interleaved, sequential, partly finished."""

from __future__ import annotations

from typing import Any

from dialects.case import Case, Truth
from dialects.sse import DONE, fin, role, script, tok, usage_chunk


def _two_choices(*, finish: tuple[str | None, str | None] = ("stop", "stop"), done: bool = True) -> tuple:
    """n=2 interleaved: choice 0 tokens at 50/100/150 ms, choice 1 at 75/125/175 ms."""
    items: list[tuple[float, Any]] = [(0.0, role(index=0)), (0.0, role(index=1))]
    for k in range(3):
        items += [(0.05 * (k + 1), tok(f" a{k}", index=0)), (0.05 * (k + 1) + 0.025, tok(f" b{k}", index=1))]
    if finish[0]:
        items.append((0.176, fin(finish[0], index=0)))
    if finish[1]:
        items.append((0.176, fin(finish[1], index=1)))
    items.append((0.176, usage_chunk(6)))
    if done:
        items.append((0.176, DONE))
    return script(*items)


# Both choices: TTFT = the first token of either, E2E = the last of either, 2 gaps of 50 ms each.
_N2 = dict(ttft_ms=50, e2e_ms=175, output_tokens=6, itl_gaps=4, gap_ms=50, tpot_ms=125 / 2)

CASES = (
    Case(
        name="n1_rising_indexes_without_done",
        family="generic", kinds=("choices", "end_of_stream"),
        source="n=1, index rising per chunk (microsoft/foundry-local#263) and no [DONE]: the finish chunk's "
               "index 4 still finishes the one completion",
        writes=script((0.0, role()), *((0.05 * (i + 1), tok(f" t{i}", index=i)) for i in range(4)),
                      (0.205, fin(index=4))),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=False,
                    finish_reason="stop"),
    ),
    Case(
        name="n1_constant_index_1",
        family="generic", kinds=("choices",),
        source="a gateway that numbers its single choice 1 (spring-projects/spring-ai#6221)",
        writes=script((0.0, role(index=1)), *((at, tok(f" t{i}", index=1)) for i, at in enumerate([0.05, 0.10, 0.15])),
                      (0.155, fin(index=1))),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=False,
                    finish_reason="stop"),
    ),
    Case(
        name="n1_no_index_field",
        family="generic", kinds=("choices",),
        source="choices without an index field (hand-rolled OpenAI-compatible servers)",
        writes=script(*((at, {"object": "chat.completion.chunk", "choices": [{"delta": d, "finish_reason": f}]})
                        for at, d, f in [(0.0, {"role": "assistant"}, None), (0.05, {"content": " a"}, None),
                                         (0.10, {"content": " b"}, None), (0.15, {"content": " c"}, None),
                                         (0.155, {}, "stop")]), (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
    Case(
        name="n2_interleaved",
        family="openai", kinds=("choices",), n=2,
        source="OpenAI's n=2 stream: the two choices' chunks interleave (BerriAI/litellm#3276 shows it)",
        writes=_two_choices(),
        truth=Truth(**_N2, done_seen=True, finish_reason="stop"),
    ),
    Case(
        name="n2_both_finished_without_done",
        family="generic", kinds=("choices", "end_of_stream"), n=2,
        source="n=2, both choices finished, body ends without [DONE]: complete",
        writes=_two_choices(done=False),
        truth=Truth(**_N2, done_seen=False, finish_reason="stop"),
    ),
    Case(
        name="n2_one_unfinished_without_done",
        family="generic", kinds=("choices", "end_of_stream"), n=2,
        source="n=2, choice 1 never finishes and the body ends without [DONE]: dropped",
        writes=_two_choices(finish=("stop", None), done=False),
        truth=Truth(**_N2, status="error", error_kind="stream_dropped", done_seen=False, finish_reason="stop"),
    ),
    Case(
        name="n2_mixed_finish_reasons",
        family="generic", kinds=("choices", "finish"), n=2,
        source="n=2, one choice stops, the other hits max_tokens: both raw reasons kept",
        writes=_two_choices(finish=("stop", "length")),
        truth=Truth(**_N2, done_seen=True, finish_reason="stop,length"),
    ),
    Case(
        name="n2_one_choice_aborted",
        family="generic", kinds=("choices", "finish"), n=2,
        source="n=2, the engine aborts one choice (finish_reason abort): the request failed",
        writes=_two_choices(finish=("stop", "abort")),
        truth=Truth(**_N2, status="error", error_kind="server_abort", done_seen=True, finish_reason="stop,abort"),
    ),
    Case(
        name="n2_sequential_choices",
        family="generic", kinds=("choices",), n=2,
        source="n=2 generated one after the other: all of choice 0, then all of choice 1",
        writes=script((0.0, role(index=0)), (0.05, tok(" a", index=0)), (0.10, tok(" b", index=0)),
                      (0.105, fin(index=0)), (0.105, role(index=1)), (0.15, tok(" c", index=1)),
                      (0.20, tok(" d", index=1)), (0.205, fin(index=1)), (0.205, usage_chunk(4)), (0.205, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=2, gap_ms=50, tpot_ms=150,
                    done_seen=True, finish_reason="stop"),
    ),
)


def _both(at: float, k: int, finish: str | None = None) -> dict[str, Any]:
    pieces = [{"index": i, "delta": {"content": f" {'ab'[i]}{k}"} if finish is None else {},
               "finish_reason": finish} for i in (0, 1)]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m", "choices": pieces}


CASES = CASES + (
    Case(
        name="n2_one_unfinished_with_done",
        family="generic", kinds=("choices", "end_of_stream"), n=2,
        source="n=2, choice 1 has no finish_reason but [DONE] came: [DONE] says the answer is complete",
        writes=_two_choices(finish=("stop", None)),
        truth=Truth(**_N2, done_seen=True, finish_reason="stop"),
    ),
    Case(
        name="n2_both_choices_in_each_chunk",
        family="generic", kinds=("choices",), n=2,
        source="one chunk carries a delta for each choice (a gateway mapping Vertex candidates to choices, "
               "envoyproxy/ai-gateway#1487): each choice has its own tokens and gaps",
        writes=script((0.0, role(index=0)), (0.0, role(index=1)),
                      *((0.05 * (k + 1), _both(0.05 * (k + 1), k)) for k in range(3)),
                      (0.155, _both(0.155, 3, "stop")), (0.155, usage_chunk(6)), (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=6, itl_gaps=4, gap_ms=50, tpot_ms=100 / 2,
                    done_seen=True, finish_reason="stop"),
    ),
)
