"""POST /tokenize: the simulator's own token counts, in the two shapes servers answer.

The simulator's tokenisation is its truth (`bench.sim.text`: one token = one whitespace-
separated word), so a client counting an answer's text here gets exactly the tokens the
simulator generated, whatever its usage says (`usage_completion_offset`).

- vLLM and SGLang: {"model"?, "prompt": TEXT} -> {"count", "max_model_len", "tokens"};
  {"messages": [...]} counts the chat template too (4 tokens a message, as prompts do).
- llama.cpp: {"content": TEXT} -> {"tokens": [...]}.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from bench.sim.api import JSON, ApiError
from bench.sim.text import CHAT_TEMPLATE_TOKENS_PER_MESSAGE, stable_hash

__all__ = ["VOCABULARY", "token_ids", "tokenize_answer"]

VOCABULARY = 32_000  # token ids are word hashes modulo this


def token_ids(text: str) -> list[int]:
    """One id per whitespace-separated word."""
    return [stable_hash(word) % VOCABULARY for word in text.split()]


def tokenize_answer(raw: bytes, models: set[str], max_model_len: int) -> web.Response:
    """The /tokenize response for request body `raw`; an OpenAI-style error for a bad one."""
    try:
        body = _body(raw)
        if "content" in body:  # llama.cpp
            return _json({"tokens": token_ids(_text(body, "content"))})
        model = body.get("model")
        if model is not None and model not in models:
            raise ApiError(404, f"The model `{model}` does not exist.", "model")
        if "messages" in body:
            ids = _message_ids(body["messages"])
        elif "prompt" in body:
            ids = token_ids(_text(body, "prompt"))
        else:
            raise ApiError(400, "give prompt, messages or content", "prompt")
        return _json({"count": len(ids), "max_model_len": max_model_len, "tokens": ids})
    except ApiError as err:
        return err.response()


def _body(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def _text(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise ApiError(400, f"{key}: must be a string", key)
    return value


def _message_ids(messages: Any) -> list[int]:
    if not isinstance(messages, list):
        raise ApiError(400, "messages: must be a list", "messages")
    ids: list[int] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        ids += [0] * CHAT_TEMPLATE_TOKENS_PER_MESSAGE + token_ids(content if isinstance(content, str) else "")
    return ids


def _json(data: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type=JSON)
