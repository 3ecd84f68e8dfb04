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


def _perplexity(so_far: str, piece: str, finish: str | None = None) -> dict:
    # Each chunk also repeats the whole message so far (perplexityai/api-discussion#209).
    return chunk({"role": "assistant", "content": piece}, finish=finish,
                 choice={"message": {"role": "assistant", "content": so_far}})


CASES = CASES + (
    Case(
        name="growing_message_without_done",
        family="generic", kinds=("end_of_stream", "output"),
        source="Perplexity's stream: every chunk repeats the message so far next to the delta, and no "
               "[DONE] comes (perplexityai/api-discussion#209)",
        writes=script((0.05, _perplexity("The", "The")), (0.10, _perplexity("The sky", " sky")),
                      (0.15, _perplexity("The sky is", " is")), (0.20, _perplexity("The sky is blue", " blue")),
                      (0.205, _perplexity("The sky is blue", "", "stop")), (0.205, usage_chunk(4))),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=False,
                    finish_reason="stop", token_kinds=(("content", 4),)),
    ),
    Case(
        name="done_then_trailing_heartbeats",
        family="generic", kinds=("end_of_stream",),
        source="a proxy that goes on sending heartbeats after [DONE] and closes the body much later "
               "(openai/openai-python#3581; the SDK stops at [DONE]): complete at [DONE], not an idle "
               "timeout",
        writes=script((0.0, role()), *tokens_at([0.05, 0.10, 0.15]), (0.155, fin()), (0.155, usage_chunk(3)),
                      (0.155, DONE)) + tuple((0.155 + 0.4 * k, b": keepalive\n\n") for k in range(1, 4)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
)
