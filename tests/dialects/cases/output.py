"""Output kinds: every generated delta counts for first token, E2E and ITL; empty ones do not."""

from __future__ import annotations

from dialects.case import Case, Truth
from dialects.sse import DONE, chunk, fin, role, script, text, tok, usage_chunk


def _reasoning(piece: str, field: str = "reasoning_content") -> dict:
    return chunk({field: piece})


def _tools(content: object, fragment: str, header: bool = False) -> dict:
    call: dict = {"index": 0, "function": {"arguments": fragment}}
    if header:
        call.update(id="call_9", type="function")
        call["function"]["name"] = "search"
    return chunk({"content": content, "tool_calls": [call]})


CASES = (
    Case(
        name="reasoning_content_then_content",
        family="generic", kinds=("output",),
        source="DeepSeek-style delta.reasoning_content before the answer (langchain-ai/langchain#34152)",
        writes=script((0.0, role()), (0.05, _reasoning("Let")), (0.10, _reasoning(" me")),
                      (0.15, _reasoning(" think")), (0.20, tok("Yes")), (0.25, tok(".")),
                      (0.255, fin()), (0.255, usage_chunk(5)), (0.255, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=250, output_tokens=5, itl_gaps=4, gap_ms=50, done_seen=True,
                    finish_reason="stop", token_kinds=(("reasoning", 3), ("content", 2))),
    ),
    Case(
        name="content_parts_list",
        family="generic", kinds=("output",),
        source="delta.content as a list of typed parts ([{\"type\": \"text\", \"text\": ...}]), as "
               "Mistral's API streams it",
        writes=script((0.0, role()),
                      *((at, chunk({"content": [{"type": "text", "text": f" p{i}"}]}))
                        for i, at in enumerate([0.05, 0.10, 0.15])),
                      (0.155, fin()), (0.155, usage_chunk(3)), (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop", token_kinds=(("content", 3),)),
    ),
    Case(
        name="empty_content_chunks_are_not_output",
        family="generic", kinds=("output",),
        source="content \"\" chunks while the prompt is still processed (vLLM's chunked-prefill path, "
               "vllm-project/vllm#19536): not a first token",
        writes=script((0.0, role()), (0.05, tok("")), (0.10, tok("")), (0.15, tok(" a")), (0.20, tok(" b")),
                      (0.25, tok(" c")), (0.255, fin()), (0.255, usage_chunk(3)), (0.255, DONE)),
        truth=Truth(ttft_ms=150, e2e_ms=250, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop", token_kinds=(("content", 3),)),
    ),
    Case(
        name="tool_calls_with_content_null",
        family="generic", kinds=("output",),
        source="tool-call deltas that spell out content: null (smg-project/smg#2391); no usage",
        writes=script((0.0, role()), (0.10, _tools(None, "", header=True)), (0.15, _tools(None, '{"q": ')),
                      (0.20, _tools(None, '"llm"}')), (0.205, fin("tool_calls")), (0.205, DONE)),
        truth=Truth(ttft_ms=100, e2e_ms=200, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="tool_calls", token_kinds=(("tool_call", 3),)),
    ),
    Case(
        name="reasoning_and_content_in_one_chunk",
        family="generic", kinds=("output",),
        source="a reasoning parser that flushes its last reasoning and the first content in one delta: "
               "one output chunk (recorded as content)",
        writes=script((0.0, role()), (0.05, _reasoning("Hmm")),
                      (0.10, chunk({"reasoning_content": ".", "content": "Sure"})), (0.15, tok("!")),
                      (0.155, fin()), (0.155, usage_chunk(4)), (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=4, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop", token_kinds=(("reasoning", 1), ("content", 2))),
    ),
    Case(
        name="completions_text",
        family="generic", kinds=("output",), endpoint="completions",
        source="/v1/completions streams choices[].text (recorded as content)",
        writes=script(*((at, text(f" w{i}")) for i, at in enumerate([0.05, 0.10, 0.15, 0.20])),
                      (0.205, text("", finish="length")), (0.205, usage_chunk(4, object="text_completion")),
                      (0.205, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=True,
                    finish_reason="length", token_kinds=(("content", 4),)),
    ),
)


def _foundry(content: str) -> dict:
    # Every delta spells out the empty fields (microsoft/foundry-local#263).
    return chunk({"role": "assistant", "content": content, "name": None, "tool_call_id": None,
                  "function_call": None, "tool_calls": []})


CASES = CASES + (
    Case(
        name="empty_tool_calls_array_is_not_output",
        family="generic", kinds=("output",),
        source="deltas that carry \"tool_calls\": [] and \"function_call\": null on every chunk "
               "(microsoft/foundry-local#263): the empty chunks before the answer are not output",
        writes=script((0.05, _foundry("")), (0.10, _foundry("")), (0.15, _foundry(" a")), (0.20, _foundry(" b")),
                      (0.25, _foundry(" c")), (0.255, fin()), (0.255, DONE)),
        truth=Truth(ttft_ms=150, e2e_ms=250, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop", token_kinds=(("content", 3),)),
    ),
)
