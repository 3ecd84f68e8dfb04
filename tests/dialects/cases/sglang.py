"""SGLang's OpenAI server: matched_stop, abort finish, error events, unknown finish reason."""

from __future__ import annotations

from typing import Any

from dialects.case import Case, Truth
from dialects.sse import DONE, chunk, error, script, usage_chunk


def _s(delta: dict[str, Any], finish: str | None = None, matched: Any = None, **kw: Any) -> dict[str, Any]:
    return chunk(delta, finish=finish, cid="b1c2d3", choice={"logprobs": None, "matched_stop": matched},
                 usage=None, **kw)


_ROLE = _s({"role": "assistant", "content": ""})

CASES = (
    Case(
        name="sglang_plain_matched_stop",
        family="sglang", kinds=("output",),
        source="SGLang chat stream: usage null on every chunk, matched_stop on the finish chunk "
               "(sgl-project/sglang#1684), include_usage chunk, [DONE]",
        writes=script((0.0, _ROLE), *((at, _s({"content": f" t{i}"})) for i, at in enumerate([0.05, 0.10, 0.15])),
                      (0.155, _s({}, "stop", matched=151645)), (0.155, usage_chunk(3)), (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
    Case(
        name="sglang_abort_after_one_token",
        family="sglang", kinds=("finish",),
        source="an aborted request came back as a 200 with one completion token and finish_reason abort "
               "(sgl-project/sglang#2956, #6693)",
        writes=script((0.0, _ROLE), (0.05, _s({"content": "The"})), (0.06, _s({}, "abort")),
                      (0.06, usage_chunk(1)), (0.06, DONE)),
        truth=Truth(status="error", error_kind="server_abort", ttft_ms=50, e2e_ms=50, output_tokens=1,
                    done_seen=True, finish_reason="abort"),
    ),
    Case(
        name="sglang_error_event",
        family="sglang", kinds=("error_in_200",),
        source="SGLang's create_streaming_error_response: data {'error': {...}} inside the 200 stream, "
               "then [DONE] (sgl-project/sglang#19357)",
        writes=script((0.0, _ROLE),
                      (0.03, error("The input (4097 tokens) is longer than the model's context length "
                                   "(4096 tokens).", object="error", type="BadRequestError", param=None, code=400)),
                      (0.03, DONE)),
        truth=Truth(status="error", error_kind="server_error_event", message="longer than the model's context length"),
    ),
    Case(
        name="sglang_finish_unknown",
        family="sglang", kinds=("finish",),
        source="SGLang's format_finish_reason falls back to \"unknown\": bench keeps it raw, the answer is ok",
        writes=script((0.0, _ROLE), *((at, _s({"content": f" t{i}"})) for i, at in enumerate([0.05, 0.10, 0.15])),
                      (0.155, _s({}, "unknown")), (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="unknown"),
    ),
)

CASES = CASES + (
    Case(
        name="sglang_finish_reason_object_abort",
        family="sglang", kinds=("finish",),
        source="SGLang's finish_reason as an object {type, message} (sgl-project/sglang#1407 made it a "
               "dict): type abort is a cut-off; the message is the server's",
        writes=script((0.0, _ROLE), (0.05, _s({"content": " a"})), (0.10, _s({"content": " b"})),
                      (0.105, _s({}, {"type": "abort", "message": "Abort in waiting queue", "status_code": 503})),
                      (0.105, DONE)),
        truth=Truth(status="error", error_kind="server_abort", message="Abort in waiting queue", ttft_ms=50,
                    e2e_ms=100, output_tokens=2, itl_gaps=1, gap_ms=50, done_seen=True, finish_reason="abort"),
    ),
    Case(
        name="sglang_finish_reason_object_stop",
        family="sglang", kinds=("finish",),
        source="SGLang's finish_reason object {type: stop, matched: <token id>} (sgl-project/sglang#1407): "
               "a normal stop",
        writes=script((0.0, _ROLE), (0.05, _s({"content": " a"})), (0.10, _s({"content": " b"})),
                      (0.105, _s({}, {"type": "stop", "matched": 151645}))),
        truth=Truth(ttft_ms=50, e2e_ms=100, output_tokens=2, itl_gaps=1, gap_ms=50, done_seen=False,
                    finish_reason="stop"),
    ),
)
