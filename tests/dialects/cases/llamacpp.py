"""llama.cpp's server (and forks, LM Studio's GGUF path): role-only first chunk, timings, [DONE] or not."""

from __future__ import annotations

from typing import Any

from dialects.case import Case, Truth
from dialects.sse import DONE, chunk, error, script, text, usage, usage_chunk

_TIMINGS = {"prompt_n": 12, "prompt_ms": 31.5, "prompt_per_token_ms": 2.6, "prompt_per_second": 381.0,
            "predicted_n": 4, "predicted_ms": 151.2, "predicted_per_token_ms": 37.8, "predicted_per_second": 26.5}


def _l(delta: dict[str, Any], finish: str | None = None, **kw: Any) -> dict[str, Any]:
    return chunk(delta, finish=finish, cid="chatcmpl-Qw3", system_fingerprint="b5966-5d804a49", **kw)


_ROLE = _l({"role": "assistant", "content": None})
_TOKENS = [(0.05 * (i + 1), _l({"content": f" t{i}"})) for i in range(4)]

CASES = (
    Case(
        name="llamacpp_timings_and_done",
        family="llamacpp", kinds=("output",),
        source="llama.cpp: role-only first chunk (content null), usage and the server's own timings on the "
               "finish chunk, then [DONE] (ggml-org/llama.cpp#9459)",
        writes=script((0.0, _ROLE), *_TOKENS, (0.205, _l({}, "stop", usage=usage(4, 12), timings=_TIMINGS)),
                      (0.205, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=True,
                    finish_reason="stop",
                    columns=(("server_prompt_n", 12.0), ("server_predicted_n", 4.0), ("server_prompt_ms", 31.5))),
    ),
    Case(
        name="llamacpp_fork_without_done",
        family="llamacpp", kinds=("end_of_stream",),
        source="ik_llama.cpp (ikawrakow/ik_llama.cpp#467) and llama.cpp before #9459 end a complete stream "
               "without [DONE]",
        writes=script((0.0, _ROLE), *_TOKENS, (0.205, _l({}, "stop", usage=usage(4, 12), timings=_TIMINGS))),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=False,
                    finish_reason="stop"),
    ),
    Case(
        name="llamacpp_error_data_after_tokens",
        family="llamacpp", kinds=("error_in_200",),
        source="current llama.cpp reports a mid-stream failure as data {'error': {...}} without choices, "
               "then ends (unslothai/unsloth#9390; message from ggml-org/llama.cpp#19774)",
        writes=script((0.0, _ROLE), *_TOKENS[:2],
                      (0.12, error("Context size has been exceeded.", code=500, type="server_error"))),
        truth=Truth(status="error", error_kind="server_error_event", message="Context size has been exceeded",
                    ttft_ms=50, e2e_ms=100, output_tokens=2, itl_gaps=1, gap_ms=50, done_seen=False),
    ),
    Case(
        name="llamacpp_completions_empty_final_text",
        family="llamacpp", kinds=("output", "end_of_stream"), endpoint="completions",
        source="llama.cpp /v1/completions: text chunks, then an empty text with the finish reason "
               "(ikawrakow/ik_llama.cpp#767); no usage, no [DONE]",
        writes=script(*((at, text(f" w{i}")) for i, at in enumerate([0.05, 0.10, 0.15])),
                      (0.155, text("", finish="stop"))),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=False,
                    finish_reason="stop", token_kinds=(("content", 3),)),
    ),
    Case(
        name="llamacpp_n2_usage_per_choice",
        family="llamacpp", kinds=("choices",), n=2,
        source="llama.cpp with n=2 sends one usage chunk per choice, each counting its own completion",
        writes=script((0.0, _l({"role": "assistant", "content": None}, index=0)),
                      (0.0, _l({"role": "assistant", "content": None}, index=1)),
                      (0.05, _l({"content": " a"}, index=0)), (0.075, _l({"content": " b"}, index=1)),
                      (0.10, _l({"content": " c"}, index=0)), (0.125, _l({"content": " d"}, index=1)),
                      (0.13, _l({}, "stop", index=0)), (0.13, _l({}, "stop", index=1)),
                      (0.13, usage_chunk(2, 12)), (0.13, usage_chunk(2, 12)), (0.13, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=125, output_tokens=4, itl_gaps=2, gap_ms=50, tpot_ms=75,
                    done_seen=True, finish_reason="stop"),
    ),
    Case(
        name="lmstudio_prompt_over_context_empty_answer",
        family="llamacpp", kinds=("end_of_stream",),
        source="LM Studio's GGUF path answers a prompt over the context with a well-formed 200 stream of "
               "zero deltas (lmstudio-ai/lmstudio-bug-tracker#2339): a valid stream, no output",
        writes=script((0.0, _ROLE), (0.05, _l({}, "stop")), (0.05, usage_chunk(0, 36000)), (0.05, DONE)),
        truth=Truth(output_tokens=0, done_seen=True, finish_reason="stop"),
    ),
)

CASES = CASES + (
    Case(
        name="lmstudio_error_with_top_level_message",
        family="llamacpp", kinds=("error_in_200",),
        source="LM Studio reports a stream failure as {'error': {'message': ...}, 'message': ...} without a "
               "type (zendev-sh/goai#110)",
        writes=script((0.0, _ROLE), *_TOKENS[:1], (0.08, {"error": {"message": "Compute error."},
                                                          "message": "Compute error."})),
        truth=Truth(status="error", error_kind="server_error_event", message="Compute error.",
                    ttft_ms=50, e2e_ms=50, output_tokens=1, done_seen=False),
    ),
)
