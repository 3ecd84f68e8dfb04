"""The numbered conditions of issue 14 (1-6 and 8), with the issue's exact numbers."""

from __future__ import annotations

import json

from dialects.case import Case, Truth
from dialects.sse import DONE, chunk, dumps, fin, role, script, tok, tokens_at, usage_chunk

_CTX = "the request exceeds the available context size. try increasing the context size or enable context shift"


def _error_field(obj: dict) -> bytes:
    # The SSE field is named `error`, not `data`: llama.cpp's server_sent_event(sink, "error", ...).
    return f"error: {dumps(obj)}\n\n".encode()


def _tool_args(fragment: str) -> dict:
    return chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})


CASES = (
    Case(
        name="c1_error_field_alone",
        family="condition", kinds=("error_in_200",),
        source="issue 14 #1; llama.cpp servers of 2025 send `error: {...}` then [DONE] "
               "(ggml-org/llama.cpp#16104, fixed by #16109; coddy-project/coddy-agent#106)",
        writes=((0.05, _error_field({"code": 400, "message": _CTX, "type": "invalid_request_error"})),
                (0.05, DONE)),
        truth=Truth(status="error", error_kind="server_error_event", message="exceeds the available context size"),
    ),
    Case(
        name="c1_error_field_after_two_tokens",
        family="condition", kinds=("error_in_200",),
        source="issue 14 #1, after two content chunks (llama.cpp#19774 message)",
        writes=script((0.0, role()), *tokens_at([0.05, 0.10])) + (
            (0.15, _error_field({"code": 500, "message": "Context size has been exceeded.", "type": "server_error"})),
            (0.15, DONE)),
        truth=Truth(status="error", error_kind="server_error_event", message="Context size has been exceeded",
                    ttft_ms=50, e2e_ms=100, output_tokens=2, itl_gaps=1, gap_ms=50),
    ),
    Case(
        name="c2_tool_calls_only",
        family="condition", kinds=("output",),
        source="issue 14 #2: the answer is only delta.tool_calls fragments",
        writes=script(
            (0.0, role()),
            (0.20, chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                          "function": {"name": "get_weather", "arguments": ""}}]})),
            (0.25, _tool_args('{"city"')), (0.30, _tool_args(': "Paris"')),
            (0.35, _tool_args(', "unit"')), (0.40, _tool_args(': "c"}')),
            (0.405, fin("tool_calls")), (0.405, usage_chunk(20)), (0.405, DONE)),
        truth=Truth(ttft_ms=200, e2e_ms=400, output_tokens=20, itl_gaps=4, gap_ms=50, tpot_ms=200 / 19,
                    done_seen=True, finish_reason="tool_calls", token_kinds=(("tool_call", 5),)),
    ),
    Case(
        name="c3_empty_data_keepalives",
        family="condition", kinds=("framing",),
        source="issue 14 #3: `data: ` and `data:` keep-alive events (an empty data buffer is not dispatched)",
        writes=script((0.0, role()), (0.03, b"data: \n\n"), (0.05, tok(" a")), (0.075, b"data:\n\n"),
                      (0.10, tok(" b")), (0.125, b"data: \n\n"), (0.15, tok(" c")), (0.175, b"data:\n\n"),
                      (0.20, tok(" d")), (0.205, fin()), (0.205, usage_chunk(4)), (0.205, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
    Case(
        name="c4_n1_rising_indexes",
        family="condition", kinds=("choices",),
        source="issue 14 #4: n=1 with choice index 0..4 (microsoft/foundry-local#263; TGI before "
               "text-generation-inference#1648)",
        writes=script((0.0, role()), *((0.05 * (i + 1), tok(f" t{i}", index=i)) for i in range(5)),
                      (0.255, fin(index=5)), (0.255, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=250, output_tokens=5, itl_gaps=4, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
    Case(
        name="c5_finish_abort",
        family="condition", kinds=("finish",),
        source="issue 14 #5: last chunk finish_reason abort, then usage and [DONE] (vllm-project/vllm#57082)",
        writes=script((0.0, role()), *tokens_at([0.05, 0.10, 0.15]),
                      (0.155, chunk({"content": ""}, finish="abort")), (0.155, usage_chunk(3)), (0.155, DONE)),
        truth=Truth(status="error", error_kind="server_abort", ttft_ms=50, e2e_ms=150, output_tokens=3,
                    itl_gaps=2, gap_ms=50, done_seen=True, finish_reason="abort"),
    ),
    Case(
        name="c6_complete_without_done",
        family="condition", kinds=("end_of_stream",),
        source="issue 14 #6: role, 5 tokens, stop, usage 5, clean end without [DONE] (llama.cpp forks, "
               "ikawrakow/ik_llama.cpp#467)",
        writes=script((0.0, role()), *tokens_at([0.05, 0.10, 0.15, 0.20, 0.25]),
                      (0.255, fin()), (0.255, usage_chunk(5))),
        truth=Truth(ttft_ms=50, e2e_ms=250, output_tokens=5, itl_gaps=4, gap_ms=50, done_seen=False,
                    finish_reason="stop"),
    ),
    Case(
        name="c6_ends_before_finish",
        family="condition", kinds=("end_of_stream",),
        source="issue 14 #6: a body that ends cleanly before any finish_reason is still an error",
        writes=script((0.0, role()), *tokens_at([0.05, 0.10, 0.15])),
        truth=Truth(status="error", error_kind="stream_dropped", ttft_ms=50, e2e_ms=150, output_tokens=3,
                    itl_gaps=2, gap_ms=50, done_seen=False),
    ),
    Case(
        name="c8_json_error_body",
        family="condition", kinds=("json_error_body",),
        source="issue 14 #8: HTTP 200 application/json {'error': ...}; llama.cpp answered an over-long "
               "prompt so (oobabooga/textgen#7257)",
        body=json.dumps({"error": {"code": 400, "message": "the request exceeds the available context size, "
                                   "try increasing it", "type": "exceed_context_size_error",
                                   "n_prompt_tokens": 14429, "n_ctx": 8192}}).encode(),
        content_type="application/json",
        truth=Truth(status="error", error_kind="server_error_body", message="exceeds the available context size",
                    done_seen=False),
    ),
)
