"""Errors inside an HTTP 200 stream, in the forms servers use (beyond condition 1)."""

from __future__ import annotations

from dialects.case import UNCHECKED, Case, Truth
from dialects.sse import DONE, data, error, fin, role, script, tok, tokens_at, usage_chunk

CASES = (
    Case(
        name="error_event_type_with_error_object",
        family="generic", kinds=("error_in_200",),
        source="`event: error` + data {'error': {...}} + [DONE] after two tokens (8monkey-ai/hebo-gateway#71)",
        writes=script((0.0, role()), *tokens_at([0.05, 0.10]))
        + ((0.15, b"event: error\n" + data(error("messages[0].content must be a string", type="invalid_request_error",
                                                 code="upstream_bad_request", param=""))),
           (0.15, DONE)),
        truth=Truth(status="error", error_kind="server_error_event", message="must be a string",
                    ttft_ms=50, e2e_ms=100, output_tokens=2, itl_gaps=1, gap_ms=50),
    ),
    Case(
        name="error_event_type_plain_payload",
        family="generic", kinds=("error_in_200",),
        source="`event: error` whose data has no `error` key (danny-avila/LibreChat#14072 sends "
               "{'text': ...}); the event type alone says it failed",
        writes=((0.05, b"event: error\n" + data({"text": "No model spec selected"})), (0.05, DONE)),
        truth=Truth(status="error", error_kind="server_error_event"),
    ),
    Case(
        name="error_after_usage",
        family="generic", kinds=("error_in_200",),
        source="issue 14's example: an error event after the usage chunk still fails the request",
        writes=script((0.0, role()), *tokens_at([0.05, 0.10, 0.15]), (0.155, fin()), (0.155, usage_chunk(3)),
                      (0.20, error("upstream connection reset after completion", type="server_error")),
                      (0.20, DONE)),
        truth=Truth(status="error", error_kind="server_error_event", message="upstream connection reset",
                    ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, finish_reason="stop"),
    ),
    Case(
        name="error_string_payload",
        family="generic", kinds=("error_in_200",),
        source="data {'error': '<string>'} as the only event (Blaizzy/nativ#195)",
        writes=script((0.03, {"error": "thinking_budget is not supported with speculative decoding in the server."})),
        truth=Truth(status="error", error_kind="server_error_event", message="thinking_budget is not supported",
                    done_seen=False),
    ),
    Case(
        name="error_null_is_not_an_error",
        family="generic", kinds=("error_in_200",),
        source="every chunk carries \"error\": null (microsoft/foundry-local#263): a null error is no error",
        writes=script((0.0, role(error=None)), *((at, tok(f" t{i}", error=None)) for i, at in
                                                  enumerate([0.05, 0.10, 0.15])),
                      (0.155, fin(error=None)), (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
    Case(
        name="error_after_finish_before_done",
        family="generic", kinds=("error_in_200",),
        source="a proxy that reports a failure after the finish chunk and then ends the body "
               "(BerriAI/litellm#39748 reports mid-stream failures in band)",
        writes=script((0.0, role()), *tokens_at([0.05, 0.10]), (0.105, fin()),
                      (0.15, error("Guardrail blocked the response", code="400"))),
        truth=Truth(status="error", error_kind="server_error_event", message="Guardrail blocked",
                    ttft_ms=50, e2e_ms=100, output_tokens=2, itl_gaps=1, gap_ms=50, finish_reason="stop",
                    done_seen=False),
    ),
    Case(
        name="error_then_tokens_keep_coming",
        family="generic", kinds=("error_in_200",),
        source="an error event in the middle of a stream that then goes on: the request failed, whatever "
               "came after",
        writes=script((0.0, role()), (0.05, tok(" a")), (0.10, error("backend replica restarted", code=503)),
                      (0.15, tok(" b")), (0.155, fin()), (0.155, DONE)),
        truth=Truth(status="error", error_kind="server_error_event", message="backend replica restarted",
                    ttft_ms=50, e2e_ms=UNCHECKED, output_tokens=UNCHECKED, itl_gaps=UNCHECKED,
                    finish_reason=UNCHECKED),
    ),
)

CASES = CASES + (
    Case(
        name="error_field_plain_text",
        family="generic", kinds=("error_in_200",),
        source="an `error:` field whose value is plain text, not JSON: the text is the server's message",
        writes=script((0.0, role()), (0.05, tok(" a"))) + ((0.08, b"error: upstream timed out after 30s\n\n"),),
        truth=Truth(status="error", error_kind="server_error_event", message="upstream timed out after 30s",
                    ttft_ms=50, e2e_ms=50, output_tokens=1, done_seen=False),
    ),
    Case(
        name="event_error_plain_text_data",
        family="generic", kinds=("error_in_200",),
        source="`event: error` with the exception text as data, as apps on sse-starlette write it "
               "({'event': 'error', 'data': str(exc)}): a failure with that text, not a malformed chunk",
        writes=script((0.0, role()), (0.05, tok(" a"))) + ((0.08, b"event: error\ndata: CUDA error: out of memory\n\n"),),
        truth=Truth(status="error", error_kind="server_error_event", message="CUDA error: out of memory",
                    ttft_ms=50, e2e_ms=50, output_tokens=1, done_seen=False),
    ),
)
