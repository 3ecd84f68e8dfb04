"""Request bodies per endpoint (`target.endpoint`): what each API calls the prompt, the
output limit and streaming.

- chat (`/v1/chat/completions`): `messages`, `max_tokens`, streamed with usage;
- completions (`/v1/completions`): `prompt` (one string), `max_tokens`, streamed with usage;
- responses (`/v1/responses`): `input` (a string, or messages when the prompt has roles or
  a shared prefix), `max_output_tokens`, streamed (its `response.completed` event always
  carries usage, so no stream_options);
- embeddings (`/v1/embeddings`): `input` (one string, or a list of `requests.batch`
  strings), not streamed; no sampling fields (the loader refuses them).
"""

from __future__ import annotations

from typing import Any

from bench.scenario.prompts import Messages
from bench.scenario.schema import Requests

__all__ = ["ENDPOINT_PATHS", "MAX_TOKENS_FIELD", "base_body", "prompt_fields", "tool_fields"]

ENDPOINT_PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings",
                  "responses": "/responses"}
# The body field of the output limit, per endpoint (embeddings generate nothing).
MAX_TOKENS_FIELD = {"chat": "max_tokens", "completions": "max_tokens", "responses": "max_output_tokens",
                    "embeddings": None}


def base_body(sampling: dict[str, Any], model: str, endpoint: str) -> dict[str, Any]:
    """A variant's body template: model, sampling fields (`extra_body` merged in last) and
    the streaming fields of `endpoint`."""
    sampling = dict(sampling)
    extra = sampling.pop("extra_body", {}) or {}
    body: dict[str, Any] = {"model": model, **sampling}
    field = MAX_TOKENS_FIELD[endpoint]
    if field != "max_tokens" and "max_tokens" in body:
        limit = body.pop("max_tokens")
        if field is not None:
            body[field] = limit
    body.update(extra)
    if endpoint == "embeddings":
        return body
    body["stream"] = True
    if endpoint == "responses":
        return body
    options = dict(body.get("stream_options") or {})
    options["include_usage"] = True
    body["stream_options"] = options
    return body


def prompt_fields(endpoint: str, messages: Messages, text: str | None, batch: list[str] | None = None) -> dict[str, Any]:
    """The body fields carrying the prompt. `messages`: the prompt as chat messages (a shared
    prefix included); `text`: the prompt as one string when it has no roles and no prefix;
    `batch`: embeddings only, the request's inputs when there are several."""
    if endpoint == "chat":
        return {"messages": messages}
    flat = text if text is not None else "\n".join(m["content"] for m in messages)
    if endpoint == "completions":
        return {"prompt": flat}
    if endpoint == "embeddings":
        return {"input": batch if batch is not None and len(batch) > 1 else flat}
    return {"input": text if text is not None else messages}


def tool_fields(requests: Requests | None) -> dict[str, Any]:
    """`tools` and `tool_choice` as the scenario writes them (sent verbatim), or {}."""
    out: dict[str, Any] = {}
    if requests is not None and requests.tools:
        out["tools"] = [dict(tool) for tool in requests.tools]
    if requests is not None and requests.tool_choice is not None:
        out["tool_choice"] = requests.tool_choice
    return out
