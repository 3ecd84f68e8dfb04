"""LiteLLM proxy: error frames with and without [DONE], omitted finish_reason keys, zero usage objects."""

from __future__ import annotations

from dialects.case import Case, Truth
from dialects.sse import DONE, error, script, tok, usage, usage_chunk


def _no_finish_key(text: str) -> dict:
    return {"id": "chatcmpl-6838", "object": "chat.completion.chunk", "created": 1716278085, "model": "m",
            "choices": [{"index": 0, "delta": {"content": text}}]}


CASES = (
    Case(
        name="litellm_error_frame_without_done",
        family="litellm", kinds=("error_in_200",),
        source="LiteLLM proxy streams an upstream failure as data {'error': {'message': ...}} and stops, "
               "no [DONE] (BerriAI/litellm#5175)",
        writes=script((0.05, tok("The")),
                      (0.08, error("litellm.APIConnectionError: Extra data: line 1 column 8 (char 7)\n"
                                   "Traceback (most recent call last):\n  File \"utils.py\", line 10156"))),
        truth=Truth(status="error", error_kind="server_error_event", message="litellm.APIConnectionError",
                    ttft_ms=50, e2e_ms=50, output_tokens=1, done_seen=False),
    ),
    Case(
        name="litellm_error_frame_then_done",
        family="litellm", kinds=("error_in_200",),
        source="LiteLLM reports a mid-stream failure in band and then sends [DONE] (BerriAI/litellm#39748)",
        writes=script((0.05, tok("One")), (0.10, tok(" two")),
                      (0.12, error("Guardrail post_call blocked the response", type="None", param="None",
                                   code="400")), (0.12, DONE)),
        truth=Truth(status="error", error_kind="server_error_event", message="blocked the response",
                    ttft_ms=50, e2e_ms=100, output_tokens=2, itl_gaps=1, gap_ms=50),
    ),
    Case(
        name="litellm_tgi_eos_text_no_finish_key",
        family="litellm", kinds=("output", "finish"),
        source="LiteLLM in front of TGI: choices without a finish_reason key, the end token streamed as text, "
               "then {'finish_reason': 'stop', 'delta': {}} (BerriAI/litellm#3757)",
        writes=script((0.05, _no_finish_key("2+2")), (0.10, _no_finish_key(" is 4")),
                      (0.15, _no_finish_key("<|im_end|>")),
                      (0.155, {"id": "chatcmpl-6838", "object": "chat.completion.chunk", "created": 1716278086,
                               "model": "m", "choices": [{"finish_reason": "stop", "index": 0, "delta": {}}]}),
                      (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
    Case(
        name="litellm_zero_usage_on_every_chunk",
        family="litellm", kinds=("output",),
        source="every chunk carries an all-zero usage object until the real one at the end "
               "(BerriAI/litellm#3490 shows usage=Usage() on each chunk)",
        writes=script(*((at, tok(f" t{i}", usage=usage(0, 0))) for i, at in enumerate([0.05, 0.10, 0.15, 0.20])),
                      (0.205, {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
                               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                               "usage": usage(0, 0)}),
                      (0.205, usage_chunk(4)), (0.205, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
)
