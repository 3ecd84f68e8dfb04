"""Conversation datasets: ShareGPT-format import.

Accepted shapes (a JSON array of records, or JSONL with one record per line):

- ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|"system", "value": "..."}, ...]}``
- OpenAI style: ``{"messages"|"conversations": [{"role": ..., "content": ...}, ...]}``

Roles are normalised to system / user / assistant. The public ShareGPT dumps contain empty
and malformed conversations, and conversations whose human turns are "" or only spaces, so
those are skipped and counted (`PromptSet.skipped`); an empty or whitespace-only turn is
never sent. Only a file with nothing usable at all is an error (one line, naming the file
and the first problem seen).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bench.errors import BenchInputError, read_input_bytes
from bench.scenario.prompts import Prompt, PromptSet, blank

__all__ = ["ShareGptConversation", "first_prompt", "read_sharegpt", "sharegpt_dataset", "sharegpt_prompts"]

ShareGptConversation = tuple[dict[str, str], ...]  # one ShareGPT record: its turns as {"role", "content"}

_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant", "assistant": "assistant",
    "model": "assistant", "bing": "assistant",
    "system": "system",
}


def read_sharegpt(path: Path) -> list[ShareGptConversation]:
    """All readable conversations of a ShareGPT file that have a non-empty user turn, in file order."""
    path = Path(path)
    records = _records(path, read_input_bytes(path, "dataset", file_word=""))
    conversations: list[ShareGptConversation] = []
    first_problem: str | None = None
    for where, record in records:
        conversation, _, problem = _conversation(record)
        if conversation is not None:
            conversations.append(conversation)
        elif first_problem is None:
            first_problem = f"{where}: {problem}"
    if not conversations:
        raise BenchInputError(_nothing_usable(path, len(records), first_problem))
    return conversations


def sharegpt_dataset(path: Path) -> PromptSet:
    """One prompt per usable conversation (see `first_prompt`), with its later user turns
    for multi-turn runs; the records left out are counted by reason."""
    path = Path(path)
    records = _records(path, read_input_bytes(path, "dataset", file_word=""))
    prompts: list[Prompt] = []
    skipped: dict[str, int] = {}
    first_problem: str | None = None
    for where, record in records:
        conversation, reason, problem = _conversation(record)
        prompt = first_prompt(conversation) if conversation is not None else None
        if prompt is not None:
            prompts.append(prompt)
            continue
        if conversation is not None:
            reason, problem = "no_reply", "no assistant reply follows the first non-empty user turn"
        skipped[reason] = skipped.get(reason, 0) + 1
        first_problem = first_problem or f"{where}: {problem}"
    if not prompts:
        raise BenchInputError(_nothing_usable(path, len(records), first_problem))
    return PromptSet("file", prompts, len(records), skipped)


def _nothing_usable(path: Path, records: int, first_problem: str | None) -> str:
    detail = f" (first problem: {first_problem})" if first_problem else ""
    return f"{path}: no usable conversation among {records} records{detail}"


def sharegpt_prompts(conversations: list[ShareGptConversation], source: str = "ShareGPT dataset") -> list[Prompt]:
    """`first_prompt` of each conversation that has one; BenchInputError when none has."""
    prompts = [p for p in map(first_prompt, conversations) if p is not None]
    if not prompts:
        raise BenchInputError(f"{source}: no conversation has a user turn followed by an assistant reply")
    return prompts


def first_prompt(conversation: ShareGptConversation) -> Prompt | None:
    """The conversation's chat prompt, as vLLM's ShareGPT benchmark builds them, or None.

    The prompt is the first user turn with text (turns that are "" or only whitespace are
    never sent), after the conversation's system message if one precedes its first user
    turn; `max_tokens` is the word count of the assistant reply that follows it (at least
    1), the output length the original conversation had. A conversation without such a
    reply has no prompt, as vLLM skips conversations of fewer than two turns. The user
    turns with text after that reply are kept as `later_turns` for multi-turn runs.
    """
    users = [i for i, m in enumerate(conversation) if m["role"] == "user" and not blank(m["content"])]
    if not users or users[0] + 1 >= len(conversation) or conversation[users[0] + 1]["role"] != "assistant":
        return None
    start = users[0]
    first_user = next(i for i, m in enumerate(conversation) if m["role"] == "user")
    messages = []
    if first_user > 0 and conversation[first_user - 1]["role"] == "system":
        messages.append(dict(conversation[first_user - 1]))
    messages.append(dict(conversation[start]))
    later = tuple(_later_turn(conversation, i) for i in users[1:])
    return Prompt(messages=messages, text=None, max_tokens=_reply_tokens(conversation, start), later_turns=later)


def _later_turn(conversation: ShareGptConversation, i: int) -> Prompt:
    """A later user turn; max_tokens from its reply, none when the reply is missing or empty."""
    reply = _reply_tokens(conversation, i)
    return Prompt([dict(conversation[i])], None, reply if reply and not blank(conversation[i + 1]["content"]) else None)


def _reply_tokens(conversation: ShareGptConversation, user: int) -> int | None:
    """Words of the assistant reply after turn `user` (at least 1); None without a reply."""
    if user + 1 >= len(conversation) or conversation[user + 1]["role"] != "assistant":
        return None
    return max(1, len(conversation[user + 1]["content"].split()))


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


def _conversation(record: Any) -> tuple[ShareGptConversation | None, str, str]:
    """The normalised conversation, or None, the reason key (`SKIP_REASONS`) and the problem."""
    if not isinstance(record, dict):
        return None, "malformed", f"expected an object, got {type(record).__name__}"
    turns = record.get("conversations", record.get("messages"))
    if turns is None:
        return None, "malformed", "no 'conversations' or 'messages' key"
    if not isinstance(turns, list) or not turns:
        return None, "malformed", "conversation is empty or not a list"
    messages = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return None, "malformed", f"turn {index + 1} is not an object"
        role = turn.get("from", turn.get("role"))
        content = turn.get("value", turn.get("content"))
        if not isinstance(role, str) or role.strip().lower() not in _ROLES:
            return None, "malformed", f"turn {index + 1} has unknown role {role!r}"
        if not isinstance(content, str):
            return None, "malformed", f"turn {index + 1} has no text (value/content)"
        messages.append({"role": _ROLES[role.strip().lower()], "content": content})
    if not any(m["role"] == "user" and not blank(m["content"]) for m in messages):
        return None, "empty_text", "no user turn has text (every one is empty or only whitespace)"
    return tuple(messages), "", ""
