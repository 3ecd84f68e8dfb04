"""vLLM's OpenAI server: its chunk shape, continuous usage, reasoning field, error events, abort."""

from __future__ import annotations

from typing import Any

from dialects.case import Case, Truth
from dialects.sse import DONE, chunk, error, script, usage, usage_chunk

_RID = "chatcmpl-7f3e2a9c1b"


def _v(delta: dict[str, Any], finish: str | None = None, **kw: Any) -> dict[str, Any]:
    # vLLM adds logprobs/stop_reason to every choice.
    return chunk(delta, finish=finish, cid=_RID, choice={"logprobs": None, "stop_reason": None}, **kw)


def _running(tokens: int) -> dict[str, int]:
    return usage(tokens, prompt=11)


CASES = (
    Case(
        name="vllm_plain",
        family="vllm", kinds=("output",),
        source="vLLM chat stream: role chunk with content \"\", stop_reason on every choice, include_usage "
               "chunk, [DONE], X-Request-Id header",
        writes=script((0.0, _v({"role": "assistant", "content": ""})),
                      *((at, _v({"content": f" t{i}"})) for i, at in enumerate([0.05, 0.10, 0.15, 0.20])),
                      (0.205, _v({"content": ""}, "stop")), (0.205, usage_chunk(4, prompt=11, id=_RID)),
                      (0.205, DONE)),
        headers=(("X-Request-Id", _RID),),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=True,
                    finish_reason="stop", columns=(("server_request_id", _RID), ("prompt_tokens", 11))),
    ),
    Case(
        name="vllm_continuous_usage_multi_token_chunks",
        family="vllm", kinds=("output",),
        source="vLLM stream_options.continuous_usage_stats: every chunk has the running usage; with "
               "speculative decoding a chunk carries 2 tokens (8 tokens in 4 chunks)",
        writes=script((0.0, _v({"role": "assistant", "content": ""}, usage=_running(0))),
                      *((0.05 * (i + 1), _v({"content": f" t{2 * i} t{2 * i + 1}"}, usage=_running(2 * (i + 1))))
                        for i in range(4)),
                      (0.205, _v({"content": ""}, "stop", usage=_running(8))), (0.205, usage_chunk(8, prompt=11)),
                      (0.205, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=8, itl_gaps=3, gap_ms=50, tpot_ms=150 / 7,
                    done_seen=True, finish_reason="stop"),
    ),
    Case(
        name="vllm_reasoning_field_length",
        family="vllm", kinds=("output", "finish"),
        source="vLLM >= 0.19.1 renamed delta.reasoning_content to delta.reasoning "
               "(strands-agents/harness-sdk#2191); max_tokens reached while still thinking",
        writes=script((0.0, _v({"role": "assistant", "content": ""})),
                      *((at, _v({"reasoning": f" r{i}"})) for i, at in enumerate([0.05, 0.10, 0.15, 0.20])),
                      (0.205, _v({}, "length")), (0.205, usage_chunk(4, prompt=11)), (0.205, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=True,
                    finish_reason="length", token_kinds=(("reasoning", 4),)),
    ),
    Case(
        name="vllm_error_event_before_output",
        family="vllm", kinds=("error_in_200",),
        source="vLLM's create_streaming_error_response: data {'error': {object, message, type, param, "
               "code}} then [DONE], inside a 200 stream",
        writes=script((0.0, _v({"role": "assistant", "content": ""})),
                      (0.04, error("This model's maximum context length is 4096 tokens. However, you requested "
                                   "4200 tokens (3200 in the messages, 1000 in the completion).",
                                   object="error", type="BadRequestError", param=None, code=400)),
                      (0.04, DONE)),
        truth=Truth(status="error", error_kind="server_error_event", message="maximum context length is 4096"),
    ),
    Case(
        name="vllm_generation_error_mid_stream",
        family="vllm", kinds=("error_in_200",),
        source="vLLM turns finish_reason \"error\" into an error event mid-stream (_raise_if_error, "
               "vllm-project/vllm#57082), then [DONE]",
        writes=script((0.0, _v({"role": "assistant", "content": ""})), (0.05, _v({"content": " a"})),
                      (0.10, _v({"content": " b"})),
                      (0.12, error("Internal server error", type="InternalServerError", param=None, code=500)),
                      (0.12, DONE)),
        truth=Truth(status="error", error_kind="server_error_event", message="Internal server error",
                    ttft_ms=50, e2e_ms=100, output_tokens=2, itl_gaps=1, gap_ms=50),
    ),
    Case(
        name="vllm_abort_without_usage",
        family="vllm", kinds=("finish",),
        source="engine shutdown/scale-down aborts end the stream with finish_reason abort and [DONE] "
               "(vllm-project/vllm#57082); no usage asked for",
        writes=script((0.0, _v({"role": "assistant", "content": ""})), (0.05, _v({"content": " a"})),
                      (0.10, _v({"content": " b"})), (0.105, _v({"content": ""}, "abort")), (0.105, DONE)),
        truth=Truth(status="error", error_kind="server_abort", ttft_ms=50, e2e_ms=100, output_tokens=2,
                    itl_gaps=1, gap_ms=50, done_seen=True, finish_reason="abort"),
    ),
)
