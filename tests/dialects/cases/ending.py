"""End of stream: complete when every choice finished, [DONE] or not; done_seen recorded."""

from __future__ import annotations

from dialects.case import Case, Truth
from dialects.sse import DONE, chunk, fin, role, script, tokens_at, usage_chunk

CASES = (
    Case(
        name="done_without_finish_reason",
        family="generic", kinds=("end_of_stream",),
        source="[DONE] but no finish_reason on any chunk (vllm-project/vllm#27572): [DONE] says complete",
        writes=script((0.0, role()), *tokens_at([0.05, 0.10, 0.15]), (0.155, usage_chunk(3)), (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason=None),
    ),
    Case(
        name="role_only_then_end",
        family="generic", kinds=("end_of_stream",),
        source="a backend that dies after the role chunk; the proxy ends the body cleanly",
        writes=script((0.0, role())),
        truth=Truth(status="error", error_kind="stream_dropped", done_seen=False),
    ),
    Case(
        name="finish_on_last_token_without_done",
        family="generic", kinds=("end_of_stream", "finish"),
        source="finish_reason on the last content chunk itself, no usage, no [DONE]",
        writes=script((0.0, role()), *tokens_at([0.05, 0.10]), (0.15, chunk({"content": " end"}, finish="stop"))),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=False,
                    finish_reason="stop"),
    ),
    Case(
        name="usage_after_finish_without_done",
        family="generic", kinds=("end_of_stream",),
        source="finish chunk, then a usage chunk 50 ms later, then a clean end: usage still counted",
        writes=script((0.0, role()), *tokens_at([0.05, 0.10]), (0.105, fin()), (0.15, usage_chunk(9))),
        truth=Truth(ttft_ms=50, e2e_ms=100, output_tokens=9, itl_gaps=1, gap_ms=50, done_seen=False,
                    finish_reason="stop"),
    ),
)
