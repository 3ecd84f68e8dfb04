"""Azure OpenAI: prompt_filter_results first chunk, content filter annotations and finish reasons."""

from __future__ import annotations

from typing import Any

from dialects.case import Case, Truth
from dialects.sse import DONE, chunk, script

_SAFE = {c: {"filtered": False, "severity": "safe"} for c in ("hate", "self_harm", "sexual", "violence")}
_PROMPT_FILTER = {"id": "", "object": "", "created": 0, "model": "", "choices": [],
                  "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _SAFE}]}


def _a(delta: dict[str, Any] | None, finish: str | None = None, filters: dict | None = None) -> dict[str, Any]:
    return chunk(delta, finish=finish, cid="chatcmpl-AnhIt2", choice={"content_filter_results": filters or _SAFE},
                 system_fingerprint="fp_5154047bf2")


def _annotation(offset: int) -> dict[str, Any]:
    # Asynchronous filter: a late choice with results and offsets but no delta.
    return {"id": "", "object": "", "created": 0, "model": "", "choices": [
        {"index": 0, "finish_reason": None, "content_filter_results": _SAFE,
         "content_filter_offsets": {"check_offset": offset, "start_offset": offset, "end_offset": offset + 40}}]}


_ROLE = _a({"role": "assistant", "content": ""})
_TOKENS = [(at, _a({"content": f" t{i}"})) for i, at in enumerate([0.05, 0.10, 0.15])]

CASES = (
    Case(
        name="azure_prompt_filter_first_chunk",
        family="azure", kinds=("output",),
        source="Azure's first chunk has empty choices and only prompt_filter_results "
               "(AbanteAI/archive-old-cli-mentat#429, seratch/ChatGPT-in-Slack#49); no usage",
        writes=script((0.0, _PROMPT_FILTER), (0.0, _ROLE), *_TOKENS, (0.155, _a({}, "stop")), (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
    Case(
        name="azure_async_filter_annotation_after_finish",
        family="azure", kinds=("output", "end_of_stream"),
        source="Azure's asynchronous content filter: an annotation choice with finish_reason null after the "
               "stop chunk (microsoft/autogen#6465, langchain-ai/langchain#18977)",
        writes=script((0.0, _PROMPT_FILTER), (0.0, _ROLE), *_TOKENS, (0.155, _a({}, "stop")),
                      (0.20, _annotation(120)), (0.20, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
    Case(
        name="azure_content_filter_finish",
        family="azure", kinds=("finish",),
        source="output filtered mid-answer: finish_reason content_filter (microsoft/semantic-kernel#5289); "
               "a real finish reason, kept raw",
        writes=script((0.0, _ROLE), *_TOKENS,
                      (0.155, _a({}, "content_filter", {**_SAFE, "violence": {"filtered": True, "severity": "high"}})),
                      (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="content_filter"),
    ),
    Case(
        name="azure_deepseek_content_filter_without_done",
        family="azure", kinds=("end_of_stream", "finish"),
        source="Azure AI Foundry DeepSeek ends a filtered stream with the content_filter chunk (an empty "
               "refusal delta) and closes without [DONE] (experientiallabs/experiential#962)",
        writes=script((0.0, _ROLE), *_TOKENS, (0.20, _a({"refusal": ""}, "content_filter"))),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=False,
                    finish_reason="content_filter"),
    ),
)
