"""OpenRouter: `: OPENROUTER PROCESSING` comments, mid-stream error chunks, delta.reasoning."""

from __future__ import annotations

from typing import Any

from dialects.case import UNCHECKED, Case, Truth
from dialects.sse import DONE, script, usage_chunk

_PROCESSING = b": OPENROUTER PROCESSING\n\n"


def _r(delta: dict[str, Any], finish: str | None = None, **top: Any) -> dict[str, Any]:
    return {"id": "gen-1753977105-kKgO", "provider": "Azure", "model": "deepseek/deepseek-r1",
            "object": "chat.completion.chunk", "created": 1753977105,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": finish,
                         "logprobs": None}], **top}


CASES = (
    Case(
        name="openrouter_processing_comments",
        family="openrouter", kinds=("framing",),
        source="OpenRouter sends `: OPENROUTER PROCESSING` comments while the provider computes the first "
               "token (tmc/langchaingo#1366, mnfst/llm-gateway#2053)",
        writes=((0.0, _PROCESSING), (0.05, _PROCESSING), (0.10, _PROCESSING), (0.15, _PROCESSING))
        + script((0.20, _r({"role": "assistant", "content": "Hi"})), (0.25, _r({"content": " there"})),
                 (0.30, _r({"content": "!"})), (0.305, _r({"content": ""}, "stop")),
                 (0.305, usage_chunk(3)), (0.305, DONE)),
        truth=Truth(ttft_ms=200, e2e_ms=300, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
    Case(
        name="openrouter_mid_stream_error_with_choices",
        family="openrouter", kinds=("error_in_200",),
        source="after HTTP 200 OpenRouter reports an upstream failure in band: a chunk with a top-level "
               "error and choices[0].finish_reason \"error\" (damianvtran/local-operator#223)",
        writes=script((0.05, _r({"role": "assistant", "content": "Sure"})), (0.10, _r({"content": ","})),
                      (0.14, _r({"content": ""}, "error",
                                error={"code": 502, "message": "Provider disconnected unexpectedly",
                                       "metadata": {"error_type": "provider_unavailable"}}))),
        truth=Truth(status="error", error_kind="server_error_event", message="Provider disconnected",
                    ttft_ms=50, e2e_ms=100, output_tokens=2, itl_gaps=1, gap_ms=50, done_seen=False,
                    finish_reason=UNCHECKED),
    ),
    Case(
        name="openrouter_error_with_empty_choices",
        family="openrouter", kinds=("error_in_200",),
        source="a 200 stream whose only chunk has empty choices and a top-level error (a provider at its "
               "capacity limit, diegosouzapw/OmniRoute#8210)",
        writes=script((0.06, {"id": "gen-2", "object": "chat.completion.chunk", "choices": [],
                              "error": {"code": 502, "message": "Worker local total request limit reached (33/32)"}}),
                      (0.06, DONE)),
        truth=Truth(status="error", error_kind="server_error_event", message="request limit reached"),
    ),
    Case(
        name="openrouter_reasoning_with_empty_content",
        family="openrouter", kinds=("output",),
        source="OpenRouter reasoning deltas: content \"\" plus reasoning and reasoning_details "
               "(huggingface/responses.js#19)",
        writes=script(*((at, _r({"role": "assistant", "content": "", "reasoning": piece, "reasoning_details": []}))
                        for at, piece in [(0.05, "So"), (0.10, ", I need"), (0.15, " to")]),
                      (0.20, _r({"content": "Answer"})), (0.205, _r({"content": ""}, "stop")),
                      (0.205, usage_chunk(4)), (0.205, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=True,
                    finish_reason="stop", token_kinds=(("reasoning", 3), ("content", 1))),
    ),
)
