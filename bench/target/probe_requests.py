"""The probe's requests: a few short streamed requests to a server, each kept as an `Exchange`.

Six requests, one after another on one client (so connection reuse can be observed), each
at most `MAX_TOKENS` tokens and `timeout_s` seconds: chat without and with
`stream_options.include_usage`, with vLLM's `continuous_usage_stats`, with `n=2`, with a stop
sequence taken from the second answer, and `/v1/completions`. Each becomes an `Exchange`
(what came back, parsed by the recorder with `keep_events`); `bench.target.dialect` reads
the server's dialect from them.

Errors: a server that cannot be reached raises `ProbeConnectError`; a request that fails in
any other way (HTTP 4xx/5xx, an error event, a timeout) is kept as that exchange's `error`
and shows up in the rows that needed it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.records import OUTPUT_KIND_CODES
from bench.runner.client import ClientError, StreamClient
from bench.runner.recorder import StreamRecorder
from bench.runner.sse import StreamProtocolError

__all__ = ["CONNECT_KINDS", "DEFAULT_TIMEOUT_S", "MAX_TOKENS", "REQUEST_ID_HEADERS", "Exchange",
           "ProbeConnectError", "exchange", "first_model", "send_probe_requests", "sse_keepalives", "stop_word"]

MAX_TOKENS = 24
SEED = 1
CHAT_PROMPT = "Describe a river in two sentences."
COMPLETION_PROMPT = "A river is"
DEFAULT_TIMEOUT_S = 15.0
RAW_LIMIT = 1 << 20  # raw body bytes kept per request, for the comment-line count
CONNECT_KINDS = {"connect_refused": "connection refused", "connect_timeout": "connect timeout",
                 "connect_error": "connect error"}
# Headers servers and gateways use for their own id of a request (vLLM, OpenAI, Azure, AWS).
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-ms-request-id", "apim-request-id",
                      "x-amzn-requestid", "x-trace-id")
KEPT_HEADERS = ("connection", "keep-alive", "content-type", *REQUEST_ID_HEADERS)
# Delta fields bench knows; any other one is listed in the reasoning row (bench ignores it).

class ProbeConnectError(Exception):
    """The server could not be reached at all; the message is the one line to print."""


@dataclass(frozen=True)
class Exchange:
    """One probe request and what came back. `events` are the recorder's (t in perf_counter
    seconds, SSE event type or None, payload); `error` is "kind: message" when it failed."""

    name: str
    path: str
    body: Mapping[str, Any]
    error: str | None = None
    events: tuple[tuple[float, str | None, Any], ...] = ()
    chunk_kinds: tuple[int, ...] = ()  # recorder kind code of each chunk event
    chunk_choices: tuple[int, ...] = ()
    chunk_tokens: tuple[int, ...] = ()  # tokens the server said each chunk carries, -1 unknown
    first_token_t: float | None = None
    done_seen: bool = False
    finish_reasons: Mapping[int, str] = field(default_factory=dict)
    usage_tokens: tuple[int | None, int | None] = (None, None)
    server_timings: Mapping[str, Any] | None = None
    text: str = ""
    comment_lines: tuple[str, ...] = ()  # SSE comments (": ping"), as sent
    empty_data_events: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    reused_connection: bool = False
    reconnected: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def objects(self) -> list[dict[str, Any]]:
        """The JSON object payloads, in order ([DONE] and non-JSON payloads left out)."""
        return [payload for _, _, payload in self.events if isinstance(payload, dict)]

    def output_chunks(self) -> int:
        return sum(1 for k in self.chunk_kinds if k in OUTPUT_KIND_CODES)



def _chat_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": CHAT_PROMPT}], "max_tokens": MAX_TOKENS,
            "temperature": 0, "seed": SEED, "stream": True, **extra}


def _usage(continuous: bool = False) -> dict[str, Any]:
    options: dict[str, Any] = {"include_usage": True}
    if continuous:
        options["continuous_usage_stats"] = True  # vLLM's per-chunk usage
    return {"stream_options": options}



async def first_model(client: StreamClient, base_url: str) -> str:
    """The first model the server lists; ProbeConnectError or ValueError (one line) when none."""
    try:
        models = await client.list_models()
    except ClientError as exc:
        if exc.kind in CONNECT_KINDS:
            raise ProbeConnectError(f"cannot connect to {base_url}: {CONNECT_KINDS[exc.kind]}") from None
        raise ValueError(f"cannot list models at {base_url}/models ({exc.kind}: {exc}); pass --model") from None
    if not models:
        raise ValueError(f"{base_url}/models lists no model; pass --model")
    return models[0]


async def send_probe_requests(client: StreamClient, base_url: str, model: str,
                              timeout_s: float) -> list[Exchange]:
    """The probe's requests, in order (see the module docstring); `chat_stop` only when the
    plain answer has a word to stop on."""
    async def send(name: str, path: str, body: dict[str, Any]) -> Exchange:
        return await exchange(client, base_url, name, path, body, timeout_s)

    chat = "/chat/completions"
    done = [await send("chat", chat, _chat_body(model))]
    done.append(await send("chat_usage", chat, _chat_body(model, **_usage())))
    done.append(await send("chat_continuous", chat, _chat_body(model, **_usage(continuous=True))))
    done.append(await send("chat_n2", chat, _chat_body(model, n=2, **_usage())))
    stop = stop_word(done[1].text)  # from the answer without a stop: the same greedy answer stops early
    if stop is not None:
        done.append(await send("chat_stop", chat, _chat_body(model, stop=[stop], **_usage())))
    done.append(await send("completions", "/completions",
                           {"model": model, "prompt": COMPLETION_PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0,
                            "seed": SEED, "stream": True, **_usage()}))
    return done


async def exchange(client: StreamClient, base_url: str, name: str, path: str, body: dict[str, Any],
                   timeout_s: float) -> Exchange:
    """Send one streamed request and read its body to the end (or `timeout_s`)."""
    recorder = StreamRecorder(0.0, n=int(body.get("n", 1)))
    recorder.keep_events = True
    recorder.keep_text = True
    raw = bytearray()
    meta: dict[str, Any] = {}
    error = None
    try:
        async with asyncio.timeout(timeout_s):
            response = await client.open_stream(path, orjson.dumps(body))
            meta = {"headers": {h: v for h in KEPT_HEADERS if (v := response.header(h)) is not None},
                    "reused_connection": response.reused_connection, "reconnected": response.reconnected}
            try:
                async for t, data in response.reads():
                    if len(raw) < RAW_LIMIT:
                        raw += data
                    recorder.feed(t, data)
                recorder.close(time.perf_counter())
            finally:
                await response.aclose()
    except ClientError as exc:
        if exc.kind in CONNECT_KINDS:
            raise ProbeConnectError(f"cannot connect to {base_url}: {CONNECT_KINDS[exc.kind]}") from None
        error = f"{exc.kind}: {exc}"
    except StreamProtocolError as exc:
        error = f"{exc.kind}: {exc}"
    except TimeoutError:
        error = f"timeout: no complete answer within {timeout_s:g} s"
    if error is None and (incomplete := recorder.incomplete()) is not None:
        error = f"{incomplete[0]}: {incomplete[1]}"
    comments, empty = sse_keepalives(bytes(raw))
    chunks = recorder.chunks
    return Exchange(
        name=name, path=path, body=body, error=error, events=tuple(recorder.events),
        chunk_kinds=tuple(chunks.kind), chunk_choices=tuple(chunks.choice), chunk_tokens=tuple(chunks.tokens),
        first_token_t=recorder.first_token_t, done_seen=recorder.done_seen,
        finish_reasons=dict(recorder.finish_reasons), usage_tokens=recorder.usage_tokens(),
        server_timings=recorder.server_timings, text=recorder.text(), comment_lines=comments,
        empty_data_events=empty, **meta)


def sse_keepalives(body: bytes) -> tuple[tuple[str, ...], int]:
    """(comment lines, empty data events) in a raw SSE body: the two ways servers and gateways
    keep a quiet stream alive. The recorder drops both, so they are counted here."""
    lines = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    comments = tuple(line.decode("utf-8", "replace") for line in lines if line.startswith(b":"))
    empty = 0
    for i, line in enumerate(lines[:-1]):
        if line.rstrip() in (b"data:", b"data") and not lines[i + 1]:
            empty += 1
    return comments, empty


def stop_word(text: str) -> str | None:
    """A word from the middle of `text` to use as a stop sequence: its first occurrence has
    text before it, so a server that honours it returns a shorter answer. None if none fits."""
    words = text.split()
    for word in words[len(words) // 3:]:
        word = "".join(ch for ch in word if ch.isalnum())
        if len(word) >= 3 and text.find(word) > 0:
            return word
    return None
