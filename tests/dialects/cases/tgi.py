"""Hugging Face TGI's Messages API: `data:` without a space, eos_token, rising index, error events."""

from __future__ import annotations

from typing import Any

from dialects.case import Case, Truth
from dialects.sse import chunk, data, usage


def _t(obj: Any) -> bytes:
    return data(obj, space=False)  # TGI (axum) writes `data:{...}`


def _c(delta: dict[str, Any], finish: str | None = None, index: int = 0, **kw: Any) -> dict[str, Any]:
    return chunk(delta, finish=finish, index=index, cid="", choice={"logprobs": None},
                 system_fingerprint="2.0.4-sha-f426a33", **kw)


CASES = (
    Case(
        name="tgi_no_space_eos_token",
        family="tgi", kinds=("framing", "finish"),
        source="TGI chat stream: `data:{...}` framing, finish_reason eos_token before "
               "huggingface/text-generation-inference#2344, usage on the finish chunk",
        writes=((0.05, _t(_c({"role": "assistant", "content": "Hello"}))),
                (0.10, _t(_c({"role": "assistant", "content": " there"}))),
                (0.15, _t(_c({"role": "assistant", "content": "!"}))),
                (0.155, _t(_c({"role": "assistant", "content": ""}, "eos_token", usage=usage(3)))),
                (0.155, _t("[DONE]"))),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="eos_token"),
    ),
    Case(
        name="tgi_rising_index_finish_on_token",
        family="tgi", kinds=("choices", "finish"),
        source="TGI before text-generation-inference#1648: index 1, 2, 3 for one choice, finish_reason "
               "length on the last token chunk, no [DONE]",
        writes=((0.05, _t(_c({"role": "assistant", "content": "I"}, index=1))),
                (0.10, _t(_c({"role": "assistant", "content": "'"}, index=2))),
                (0.15, _t(_c({"role": "assistant", "content": "m"}, "length", index=3)))),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=False,
                    finish_reason="length"),
    ),
    Case(
        name="tgi_validation_error_in_stream",
        family="tgi", kinds=("error_in_200",),
        source="TGI answers a too-long request with HTTP 200 and a stream event {'error': '<string>', "
               "'error_type': 'validation'} (huggingface/huggingface_hub#2514, #2558)",
        writes=((0.02, _t({"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
                                    "Given: 7 `inputs` tokens and 4091 `max_new_tokens`",
                           "error_type": "validation"})),),
        truth=Truth(status="error", error_kind="server_error_event", message="Input validation error",
                    done_seen=False),
    ),
    Case(
        name="tgi_generation_error_object",
        family="tgi", kinds=("error_in_200",),
        source="TGI >= 2.4 sends a generation failure as an error object OpenAI clients read "
               "(huggingface/text-generation-inference#2668); fields besides message illustrative",
        writes=((0.05, _t(_c({"role": "assistant", "content": "Once"}))),
                (0.10, _t(_c({"role": "assistant", "content": " upon"}))),
                (0.13, _t({"error": {"message": "Request failed during generation: Server error: CUDA out of "
                                                "memory", "http_status_code": 500}}))),
        truth=Truth(status="error", error_kind="server_error_event", message="CUDA out of memory",
                    ttft_ms=50, e2e_ms=100, output_tokens=2, itl_gaps=1, gap_ms=50, done_seen=False),
    ),
)
