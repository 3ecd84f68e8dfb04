"""Conversation datasets: ShareGPT-format import.

Accepted shapes (a JSON array of records, or JSONL with one record per line):

- ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|"system", "value": "..."}, ...]}``
- OpenAI style: ``{"messages"|"conversations": [{"role": ..., "content": ...}, ...]}``

Roles are normalised to system / user / assistant. The public ShareGPT dumps contain empty
and malformed conversations, so those are skipped; only a file with nothing usable at all
is an error (one line, naming the file and the first problem seen).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bench.errors import BenchInputError, read_input_bytes
from bench.workload import Prompt

Conversation = tuple[dict[str, str], ...]

_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant", "assistant": "assistant",
    "model": "assistant", "bing": "assistant",
    "system": "system",
}


def read_sharegpt(path: Path) -> list[Conversation]:
    """All usable conversations of a ShareGPT file, in file order."""
    path = Path(path)
    data = read_input_bytes(path, "dataset", file_word="")
    records = _records(path, data)
    conversations: list[Conversation] = []
    first_problem: str | None = None
    for where, record in records:
        conversation, problem = _conversation(record)
        if conversation is not None:
            conversations.append(conversation)
        elif first_problem is None:
            first_problem = f"{where}: {problem}"
    if not conversations:
        detail = f" (first problem: {first_problem})" if first_problem else ""
        raise BenchInputError(f"{path}: no usable conversation among {len(records)} records{detail}")
    return conversations


def sharegpt_prompts(conversations: list[Conversation], source: str = "ShareGPT dataset") -> list[Prompt]:
    """One chat prompt per conversation, as vLLM's ShareGPT benchmark builds them.

    The prompt is the first user turn (after the system message preceding it, if any);
    `max_tokens` is the word count of the assistant reply that follows it (at least 1), the
    output length the original conversation had. Conversations without such a reply are
    skipped, as vLLM skips conversations of fewer than two turns.
    """
    prompts = []
    for conversation in conversations:
        user = next((i for i, m in enumerate(conversation) if m["role"] == "user"), None)
        if user is None or user + 1 >= len(conversation) or conversation[user + 1]["role"] != "assistant":
            continue
        messages = []
        if user > 0 and conversation[user - 1]["role"] == "system":
            messages.append(dict(conversation[user - 1]))
        messages.append(dict(conversation[user]))
        reply_words = len(conversation[user + 1]["content"].split())
        prompts.append(Prompt(messages=messages, text=None, max_tokens=max(1, reply_words)))
    if not prompts:
        raise BenchInputError(f"{source}: no conversation has a user turn followed by an assistant reply")
    return prompts


def _records(path: Path, data: bytes) -> list[tuple[str, Any]]:
    """(location, record) pairs; the location names a JSONL line or an array record."""
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        try:
            whole = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            if path.suffix.lower() == ".json" or data.lstrip().startswith(b"["):
                raise BenchInputError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
        else:
            if isinstance(whole, dict):
                whole = [whole]  # a single conversation object
            if not isinstance(whole, list):
                raise BenchInputError(f"{path}: expected a JSON array of conversations, "
                                      f"got {type(whole).__name__}")
            return [(f"record {i}", record) for i, record in enumerate(whole, 1)]
    records = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append((f"line {number}", orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            raise BenchInputError(f"{path}: line {number}: invalid JSON: {exc.msg}") from None
    return records


def _conversation(record: Any) -> tuple[Conversation | None, str]:
    """The normalised conversation, or None and why it is unusable."""
    if not isinstance(record, dict):
        return None, f"expected an object, got {type(record).__name__}"
    turns = record.get("conversations", record.get("messages"))
    if turns is None:
        return None, "no 'conversations' or 'messages' key"
    if not isinstance(turns, list) or not turns:
        return None, "conversation is empty or not a list"
    messages = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return None, f"turn {index + 1} is not an object"
        role = turn.get("from", turn.get("role"))
        content = turn.get("value", turn.get("content"))
        if not isinstance(role, str) or role.strip().lower() not in _ROLES:
            return None, f"turn {index + 1} has unknown role {role!r}"
        if not isinstance(content, str):
            return None, f"turn {index + 1} has no text (value/content)"
        messages.append({"role": _ROLES[role.strip().lower()], "content": content})
    if not any(m["role"] == "user" and m["content"].strip() for m in messages):
        return None, "no non-empty user turn"
    return tuple(messages), ""
