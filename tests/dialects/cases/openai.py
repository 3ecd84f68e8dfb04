"""OpenAI itself: include_usage, refusal, parallel and legacy tool calls, error events, completions."""

from __future__ import annotations

from typing import Any

from dialects.case import Case, Truth
from dialects.sse import DONE, chunk, error, script, text, usage

_RID = "req_5f2a9c0e8b7d"


def _o(delta: dict[str, Any], finish: str | None = None, **kw: Any) -> dict[str, Any]:
    return chunk(delta, finish=finish, cid="chatcmpl-B0C3q", usage=None, choice={"logprobs": None},
                 service_tier="default", system_fingerprint="fp_523b9b6e5f", **kw)


def _final_usage(completion: int) -> dict[str, Any]:
    return {"id": "chatcmpl-B0C3q", "object": "chat.completion.chunk", "created": 1739386062, "model": "m",
            "choices": [], "usage": {**usage(completion, 24), "completion_tokens_details": {
                "reasoning_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}}


def _call(index: int, fragment: str, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": fragment}}
    if name:
        call.update(id=f"call_{index}", type="function")
        call["function"]["name"] = name
    return _o({"tool_calls": [call]})


_ROLE = _o({"role": "assistant", "content": "", "refusal": None})

CASES = (
    Case(
        name="openai_include_usage",
        family="openai", kinds=("output",),
        source="OpenAI: refusal null on the role chunk, usage null on every chunk, a final usage chunk with "
               "completion_tokens_details, [DONE], x-request-id",
        writes=script((0.0, _ROLE), *((at, _o({"content": f" t{i}"})) for i, at in enumerate([0.05, 0.10, 0.15])),
                      (0.155, _o({}, "stop")), (0.155, _final_usage(3)), (0.155, DONE)),
        headers=(("x-request-id", _RID),),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop", columns=(("server_request_id", _RID), ("prompt_tokens", 24))),
    ),
    Case(
        name="openai_refusal_deltas",
        family="openai", kinds=("output",),
        source="Structured Outputs refusal streamed in delta.refusal (MacPaw/OpenAI#408)",
        writes=script((0.0, _ROLE), (0.05, _o({"refusal": "I'm sorry"})), (0.10, _o({"refusal": ", I can't"})),
                      (0.15, _o({"refusal": " help with that."})), (0.155, _o({}, "stop")),
                      (0.155, _final_usage(7)), (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=7, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop", token_kinds=(("refusal", 3),)),
    ),
    Case(
        name="openai_parallel_tool_calls",
        family="openai", kinds=("output",),
        source="two parallel tool calls, each a header delta then argument fragments, finish tool_calls",
        writes=script((0.0, _o({"role": "assistant", "content": None})), (0.10, _call(0, "", "get_weather")),
                      (0.15, _call(0, '{"city":"Oslo"}')), (0.20, _call(1, "", "get_time")),
                      (0.25, _call(1, '{"tz":"CET"}')), (0.255, _o({}, "tool_calls")),
                      (0.255, _final_usage(30)), (0.255, DONE)),
        truth=Truth(ttft_ms=100, e2e_ms=250, output_tokens=30, itl_gaps=3, gap_ms=50, tpot_ms=150 / 29,
                    done_seen=True, finish_reason="tool_calls", token_kinds=(("tool_call", 4),)),
    ),
    Case(
        name="openai_tool_call_finish_stop",
        family="openai", kinds=("output", "finish"),
        source="gpt-4o ended a streamed tool call with finish_reason stop, not tool_calls "
               "(ollama/ollama#7963 discussion)",
        writes=script((0.0, _o({"role": "assistant", "content": None})), (0.10, _call(0, "", "lookup")),
                      (0.15, _call(0, '{"id":')), (0.20, _call(0, "42}")), (0.205, _o({}, "stop")),
                      (0.205, _final_usage(12)), (0.205, DONE)),
        truth=Truth(ttft_ms=100, e2e_ms=200, output_tokens=12, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop", token_kinds=(("tool_call", 3),)),
    ),
    Case(
        name="openai_legacy_function_call",
        family="openai", kinds=("output", "finish"),
        source="the deprecated delta.function_call stream with finish_reason function_call",
        writes=script((0.0, _o({"role": "assistant", "content": None})),
                      (0.10, _o({"function_call": {"name": "get_weather", "arguments": ""}})),
                      (0.15, _o({"function_call": {"arguments": '{"city":'}})),
                      (0.20, _o({"function_call": {"arguments": '"Rome"}'}})),
                      (0.205, _o({}, "function_call")), (0.205, _final_usage(9)), (0.205, DONE)),
        truth=Truth(ttft_ms=100, e2e_ms=200, output_tokens=9, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="function_call", token_kinds=(("function_call", 3),)),
    ),
    Case(
        name="openai_error_event_mid_stream",
        family="openai", kinds=("error_in_200",),
        source="OpenAI reports a failure after streaming began as data {'error': {...}} "
               "(vercel/ai#1835 handles these chunks)",
        writes=script((0.0, _ROLE), (0.05, _o({"content": "Hel"})), (0.10, _o({"content": "lo"})),
                      (0.13, error("The server had an error while processing your request. Sorry about that!",
                                   type="server_error", param=None, code=None))),
        truth=Truth(status="error", error_kind="server_error_event", message="The server had an error",
                    ttft_ms=50, e2e_ms=100, output_tokens=2, itl_gaps=1, gap_ms=50, done_seen=False),
    ),
    Case(
        name="openai_completions_length",
        family="openai", kinds=("output", "finish"), endpoint="completions",
        source="legacy /v1/completions stream: finish_reason length on the last text chunk, usage chunk",
        writes=script(*((at, text(f" w{i}")) for i, at in enumerate([0.05, 0.10, 0.15])),
                      (0.20, text(" w3", finish="length")),
                      (0.20, {"id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": "m",
                              "choices": [], "usage": usage(4, 5)}), (0.20, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=True,
                    finish_reason="length", token_kinds=(("content", 4),)),
    ),
)
