"""A whole JSON body under HTTP 200 instead of a stream: an error body keeps the server's message."""

from __future__ import annotations

import json

from dialects.case import UNCHECKED, Case, Truth

CASES = (
    Case(
        name="json_error_body_string_with_charset",
        family="generic", kinds=("json_error_body",),
        body=json.dumps({"error": "Model is overloaded", "error_type": "overloaded"}).encode(),
        content_type="application/json; charset=utf-8",
        source="a 200 JSON body whose error is a plain string (TGI's error-body shape), charset in the type",
        truth=Truth(status="error", error_kind="server_error_body", message="Model is overloaded", done_seen=False),
    ),
    Case(
        name="json_error_body_openai_shape",
        family="generic", kinds=("json_error_body",),
        body=json.dumps({"error": {"message": "Rate limit reached for requests", "type": "requests",
                                   "param": None, "code": "rate_limit_exceeded"}}).encode(),
        content_type="application/json",
        source="a gateway that answers every error with HTTP 200 and the OpenAI error object "
               "(status codes masked, as BerriAI/litellm#6629 reports for a proxied provider)",
        truth=Truth(status="error", error_kind="server_error_body", message="Rate limit reached", done_seen=False),
    ),
    Case(
        name="json_200_whole_completion",
        family="generic", kinds=("json_error_body",),
        body=json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode(),
        content_type="application/json",
        source="a whole non-streamed completion although stream=true was asked: not an error body, still "
               "not_sse (dialect-semantics.md)",
        truth=Truth(status="error", error_kind="not_sse", done_seen=False, output_tokens=UNCHECKED),
    ),
)
