"""Finish reasons: the raw value is kept; the ones that mean the server cut the request off fail it."""

from __future__ import annotations

from dialects.case import Case, Truth
from dialects.sse import DONE, chunk, fin, role, script, tokens_at, usage_chunk

_HEAD = ((0.0, role()), *tokens_at([0.05, 0.10, 0.15]))
_CUT = dict(status="error", error_kind="server_abort", ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2,
            gap_ms=50, done_seen=True)

CASES = (
    Case(
        name="finish_error",
        family="generic", kinds=("finish",),
        source="finish_reason \"error\": the engine failed the request mid-generation (vLLM maps its "
               "FINISHED_ERROR to it, vllm-project/vllm#57082)",
        writes=script(*_HEAD, (0.155, fin("error")), (0.155, usage_chunk(3)), (0.155, DONE)),
        truth=Truth(**_CUT, finish_reason="error"),
    ),
    Case(
        name="finish_aborted",
        family="generic", kinds=("finish",),
        source="finish/stop reason \"aborted\" for requests a rollout server cut off "
               "(verl-project/verl#4453)",
        writes=script(*_HEAD, (0.155, fin("aborted")), (0.155, DONE)),
        truth=Truth(**_CUT, finish_reason="aborted"),
    ),
    Case(
        name="finish_cancelled",
        family="generic", kinds=("finish",),
        source="finish_reason \"cancelled\" (a cancelled generation, as some gateways report it)",
        writes=script(*_HEAD, (0.155, fin("cancelled")), (0.155, usage_chunk(3)), (0.155, DONE)),
        truth=Truth(**_CUT, finish_reason="cancelled"),
    ),
    Case(
        name="finish_canceled",
        family="generic", kinds=("finish",),
        source="finish_reason \"canceled\", the US spelling (a gateway cancelling the upstream request)",
        writes=script(*_HEAD, (0.155, fin("canceled")), (0.155, DONE)),
        truth=Truth(**_CUT, finish_reason="canceled"),
    ),
    Case(
        name="finish_length",
        family="generic", kinds=("finish",),
        source="max_tokens reached: finish_reason length is a complete answer",
        writes=script(*_HEAD, (0.155, chunk({"content": ""}, finish="length")), (0.155, usage_chunk(3)),
                      (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="length"),
    ),
    Case(
        name="finish_unknown_value_is_kept",
        family="generic", kinds=("finish",),
        source="a finish reason bench does not know (e.g. a provider's \"end_turn\" passed through by a "
               "gateway, BerriAI/litellm#12481): ok, kept raw",
        writes=script(*_HEAD, (0.155, fin("end_turn")), (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="end_turn"),
    ),
)
