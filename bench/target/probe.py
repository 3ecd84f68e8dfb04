"""`bench probe`: a few short streamed requests that show how a server speaks the stream format.

Six requests, one after another on one client (so connection reuse can be observed), each
at most `MAX_TOKENS` tokens and `timeout_s` seconds: chat without and with
`stream_options.include_usage`, with vLLM's `continuous_usage_stats`, with `n=2`, with a stop
sequence taken from the second answer, and `/v1/completions`. Each becomes an `Exchange`
(what came back, parsed by the recorder with `keep_events`); pure functions turn the
exchanges into `Finding`s (the server's dialect) and then into what bench will measure on it.

Errors: a server that cannot be reached raises `ProbeConnectError`; a request that fails in
any other way (HTTP 4xx/5xx, an error event, a timeout) is kept as that exchange's `error`
and shows up in the rows that needed it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.runner.client import ClientConfig, ClientError, StreamClient
from bench.runner.recorder import StreamProtocolError, StreamRecorder
from bench.records import CHUNK_KINDS, OUTPUT_KIND_CODES

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
KNOWN_DELTA_FIELDS = {"role", "content", "reasoning_content", "reasoning", "tool_calls", "function_call",
                      "refusal"}
REASONING_FIELDS = ("reasoning_content", "reasoning")
ONE_TOKEN_PER_CHUNK = 1.1  # at most this many tokens per chunk on average: ITL is per token


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


@dataclass(frozen=True)
class Finding:
    """One row: `summary` for people, `value` (JSON-able) for machines."""

    key: str
    label: str
    summary: str
    value: Any = None


@dataclass(frozen=True)
class ProbeReport:
    base_url: str
    target: str
    model: str
    dialect: tuple[Finding, ...]
    measures: tuple[Finding, ...]
    exchanges: tuple[Exchange, ...]

    def to_json(self) -> dict[str, Any]:
        def rows(findings: tuple[Finding, ...]) -> dict[str, Any]:
            return {f.key: {"label": f.label, "summary": f.summary, "value": f.value} for f in findings}

        requests = [{"name": e.name, "path": e.path, "error": e.error, "events": len(e.events),
                     "done_seen": e.done_seen, "finish_reasons": {str(k): v for k, v in e.finish_reasons.items()},
                     "usage_tokens": list(e.usage_tokens), "reused_connection": e.reused_connection,
                     "reconnected": e.reconnected} for e in self.exchanges]
        return {"base_url": self.base_url, "target": self.target, "model": self.model,
                "dialect": rows(self.dialect), "measures": rows(self.measures), "requests": requests}


# -- requests ----------------------------------------------------------------------------


def _chat_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": CHAT_PROMPT}], "max_tokens": MAX_TOKENS,
            "temperature": 0, "seed": SEED, "stream": True, **extra}


def _usage(continuous: bool = False) -> dict[str, Any]:
    options: dict[str, Any] = {"include_usage": True}
    if continuous:
        options["continuous_usage_stats"] = True  # vLLM's per-chunk usage
    return {"stream_options": options}


async def run_probe(base_url: str, model: str | None, api_key: str | None, target: str,
                    timeout_s: float = DEFAULT_TIMEOUT_S) -> ProbeReport:
    """Send the probe's requests to `base_url` (…/v1) and analyse them.

    `model` None: the first model the server lists. Raises ProbeConnectError when the server
    cannot be reached, and ValueError (one line) when it lists no model to use or answers
    no request with a stream (a wrong model, key or URL, usually).
    """
    client = StreamClient(ClientConfig(base_url, api_key, connect_timeout_s=min(5.0, timeout_s), max_connections=4))
    try:
        model = model or await _first_model(client, base_url)
        exchanges = await _exchanges(client, base_url, model, timeout_s)
    finally:
        await client.aclose()
    if not any(e.events for e in exchanges):
        failures = "; ".join(sorted({e.error or "" for e in exchanges}))
        raise ValueError(f"the server at {base_url} answered no probe request with a stream: {failures}"[:600])
    by_name = {e.name: e for e in exchanges}
    dialect = analyse(by_name)
    return ProbeReport(base_url, target, model, dialect, measures(dialect), tuple(exchanges))


async def _first_model(client: StreamClient, base_url: str) -> str:
    try:
        models = await client.list_models()
    except ClientError as exc:
        if exc.kind in CONNECT_KINDS:
            raise ProbeConnectError(f"cannot connect to {base_url}: {CONNECT_KINDS[exc.kind]}") from None
        raise ValueError(f"cannot list models at {base_url}/models ({exc.kind}: {exc}); pass --model") from None
    if not models:
        raise ValueError(f"{base_url}/models lists no model; pass --model")
    return models[0]


async def _exchanges(client: StreamClient, base_url: str, model: str, timeout_s: float) -> list[Exchange]:
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


# -- analysis (pure) ---------------------------------------------------------------------


def analyse(ex: Mapping[str, Exchange]) -> tuple[Finding, ...]:
    """The dialect rows, in display order, from the exchanges by name."""
    streams = [e for e in ex.values() if e.events]  # a stream came back, complete or not
    chat = [e for e in ex.values() if e.path == "/chat/completions"]
    return (
        role_first_chunk(ex["chat"]),
        usage_final(ex["chat"], ex["chat_usage"]),
        usage_continuous(ex["chat_continuous"]),
        reasoning_field(chat),
        done_marker(list(ex.values())),
        tokens_per_chunk(ex["chat_usage"], ex["chat_continuous"]),
        n_choices(ex["chat_n2"]),
        stop_sequence(ex["chat_usage"], ex.get("chat_stop")),
        completions(ex["completions"]),
        sse_keepalive(streams),
        http_keepalive(list(ex.values())),
        server_timings(streams),
        request_id(streams),
    )


def _failed(key: str, label: str, e: Exchange) -> Finding:
    return Finding(key, label, f"unknown: the request failed ({e.error})", None)


def role_first_chunk(e: Exchange) -> Finding:
    key, label = "role_first_chunk", "role-only first chunk"
    first = next(((t, p) for t, _, p in e.events if isinstance(p, dict) and isinstance(p.get("choices"), list)
                  and p["choices"]), None)
    if first is None:
        return _failed(key, label, e) if not e.ok else Finding(key, label, "unknown: no chunk had choices")
    t, payload = first
    choice = payload["choices"][0]
    delta = choice.get("delta") if isinstance(choice, dict) else None
    if not isinstance(delta, dict) or not delta.get("role"):
        return Finding(key, label, "no: the first chunk has no role", {"role_only": False})
    if any(delta.get(f) for f in KNOWN_DELTA_FIELDS - {"role"}):
        return Finding(key, label, "no: the role comes with the first token", {"role_only": False})
    content = "absent" if "content" not in delta else json.dumps(delta["content"])
    when = "no token followed"
    gap_ms = None
    if e.first_token_t is not None:
        gap_ms = (e.first_token_t - t) * 1e3
        when = "same read as the first token" if gap_ms == 0 else f"{gap_ms:.1f} ms before the first token"
    return Finding(key, label, f"yes (content {content}); {when}",
                   {"role_only": True, "content": content, "ms_before_first_token": gap_ms})


def _usage_place(e: Exchange) -> str | None:
    """Where the stream's usage came: "final" (a chunk with choices []), "last_choice_chunk"
    (on a chunk that also has choices), or None."""
    with_usage = [p for p in e.objects() if isinstance(p.get("usage"), dict)]
    if not with_usage:
        return None
    return "final" if not with_usage[-1].get("choices") else "last_choice_chunk"


def usage_final(plain: Exchange, requested: Exchange) -> Finding:
    key, label = "usage_final", "usage, final"
    if not requested.ok:
        return _failed(key, label, requested)
    place, unasked = _usage_place(requested), _usage_place(plain) if plain.ok else None
    value = {"with_include_usage": place, "without_include_usage": unasked,
             "completion_tokens": requested.usage_tokens[1]}
    if place is None:
        return Finding(key, label, "not sent, even with include_usage", value)
    where = "final chunk, choices []" if place == "final" else "on the last chunk with choices"
    asked = "also without include_usage" if unasked else "only with include_usage"
    return Finding(key, label, f"{where}: {requested.usage_tokens[1]} completion tokens ({asked})", value)


def usage_continuous(e: Exchange) -> Finding:
    key, label = "usage_continuous", "usage, continuous"
    if not e.ok:
        return Finding(key, label, f"request with continuous_usage_stats failed ({e.error})",
                       {"supported": None, "error": e.error})
    outputs = [tok for kind, tok in zip(e.chunk_kinds, e.chunk_tokens) if kind in OUTPUT_KIND_CODES]
    counted = sum(1 for tok in outputs if tok >= 0)
    value = {"supported": bool(outputs) and counted == len(outputs), "chunks_with_usage": counted,
             "output_chunks": len(outputs)}
    if value["supported"]:
        return Finding(key, label, "every chunk carries the running usage (continuous_usage_stats)", value)
    if counted:
        return Finding(key, label, f"{counted} of {len(outputs)} token chunks carry usage", value)
    return Finding(key, label, "no: continuous_usage_stats accepted, usage only at the end", value)


def reasoning_field(chat: list[Exchange]) -> Finding:
    key, label = "reasoning_field", "reasoning field"
    seen: list[str] = []
    unknown: set[str] = set()
    for e in chat:
        for p in e.objects():
            for choice in p.get("choices") or []:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if not isinstance(delta, dict):
                    continue
                seen += [f for f in REASONING_FIELDS if delta.get(f) and f not in seen]
                unknown |= {f for f, v in delta.items() if f not in KNOWN_DELTA_FIELDS and v not in (None, "", [])}
    think = any("<think>" in e.text for e in chat)
    parts = [", ".join(f"`{f}`" for f in seen) if seen else "none seen (no reasoning in these answers)"]
    if think:
        parts.append("`<think>` inside content (counted as content)")
    if unknown:
        parts.append(f"other delta fields bench ignores: {', '.join(sorted(unknown))}")
    return Finding(key, label, "; ".join(parts), {"fields": seen, "think_tags_in_content": think,
                                                  "unknown_delta_fields": sorted(unknown)})


def done_marker(exchanges: list[Exchange]) -> Finding:
    key, label = "done", "[DONE]"
    streams = [e for e in exchanges if e.events]
    sent = sum(e.done_seen for e in streams)
    value = {"streams": len(streams), "with_done": sent}
    if not streams:
        return Finding(key, label, "unknown: no stream came back", value)
    if sent == len(streams):
        return Finding(key, label, f"sent ({sent} of {len(streams)} streams)", value)
    if sent == 0:
        return Finding(key, label, f"never sent ({len(streams)} streams)", value)
    return Finding(key, label, f"sent in {sent} of {len(streams)} streams", value)


def tokens_per_chunk(usage: Exchange, continuous: Exchange) -> Finding:
    key, label = "tokens_per_chunk", "tokens per chunk"
    said = [tok for kind, tok in zip(continuous.chunk_kinds, continuous.chunk_tokens)
            if kind in OUTPUT_KIND_CODES and tok >= 0] if continuous.ok else []
    chunks = usage.output_chunks()
    tokens = usage.usage_tokens[1] if usage.ok else None
    if said:
        mean = sum(said) / len(said)
        spread = f"{min(said)} to {max(said)} per chunk" if min(said) != max(said) else f"{said[0]} each"
        return Finding(key, label, f"{mean:.2f} ({spread}, from per-chunk usage)",
                       {"mean": mean, "source": "continuous_usage"})
    if tokens is not None and chunks:
        mean = tokens / chunks
        return Finding(key, label, f"{mean:.2f} ({tokens} tokens in {chunks} chunks)",
                       {"mean": mean, "source": "usage/chunks"})
    return Finding(key, label, f"unknown: no usage ({chunks} token chunks)", {"mean": None, "source": None})


def n_choices(e: Exchange) -> Finding:
    key, label = "n2", "n=2"
    if not e.ok and not e.events:
        return Finding(key, label, f"rejected ({e.error})", {"choices": None, "error": e.error})
    order = [c for kind, c in zip(e.chunk_kinds, e.chunk_choices) if kind in OUTPUT_KIND_CODES]
    choices = sorted(set(order))
    switches = sum(1 for a, b in zip(order, order[1:]) if a != b)
    usage_chunks = sum(1 for p in e.objects() if isinstance(p.get("usage"), dict) and not p.get("choices"))
    value = {"choices": len(choices), "interleaved": switches > 1, "usage_chunks": usage_chunks,
             "completion_tokens": e.usage_tokens[1], "token_chunks": len(order), "error": e.error}
    if len(choices) < 2:
        return Finding(key, label, f"n ignored: {len(choices)} choice came back", value)
    layout = "interleaved" if switches > 1 else "one after the other"
    usage = {0: "no usage", 1: "one usage chunk"}.get(usage_chunks, f"{usage_chunks} usage chunks")
    if usage_chunks == len(choices):
        usage += " (one per choice: bench sums them)"
    counts = f"{e.usage_tokens[1]} completion tokens for {len(order)} token chunks" if e.usage_tokens[1] else ""
    summary = f"{len(choices)} choices, {layout}; {usage}" + (f", {counts}" if counts else "")
    if e.error:
        summary += f"; but {e.error}"
    return Finding(key, label, summary, value)


def stop_sequence(base: Exchange, stopped: Exchange | None) -> Finding:
    key, label = "stop", "stop sequence"
    if stopped is None:
        if not base.ok:
            return Finding(key, label, f"not tried: the answer to take a stop word from failed ({base.error})",
                           {"honoured": None})
        why = "had no word to stop on" if base.text.strip() else "had no content text (reasoning only?)"
        return Finding(key, label, f"not tried: the plain answer {why}", {"honoured": None})
    stop = stopped.body["stop"][0]
    if not stopped.ok:
        return Finding(key, label, f"request with stop {stop!r} failed ({stopped.error})", {"honoured": None})
    reason = stopped.finish_reasons.get(0)
    value = {"stop": stop, "finish_reason": reason, "chars": len(stopped.text), "chars_without_stop": len(base.text),
             "stop_text_returned": stop in stopped.text}
    if reason == "stop" and stop not in stopped.text and len(stopped.text) < len(base.text):
        return Finding(key, label, f"honoured: finish_reason stop, {stop!r} not returned", {**value, "honoured": True})
    if reason == "stop" and stop in stopped.text:
        return Finding(key, label, f"stops, but returns the stop text {stop!r}", {**value, "honoured": True})
    if stop in stopped.text:
        return Finding(key, label, f"ignored: {stop!r} returned, finish_reason {reason}", {**value, "honoured": False})
    return Finding(key, label, f"not seen: the answer never reached {stop!r} (finish_reason {reason})",
                   {**value, "honoured": None})


def completions(e: Exchange) -> Finding:
    key, label = "completions", "/v1/completions"
    if not e.ok and not e.events:
        return Finding(key, label, f"unsupported or failed ({e.error})", {"supported": False, "error": e.error})
    kinds = {CHUNK_KINDS[k] for k in e.chunk_kinds}
    place = {"final": "usage in a final chunk", "last_choice_chunk": "usage on the last chunk",
             None: "no usage"}[_usage_place(e)]
    summary = f"streams `text` ({e.output_chunks()} chunks, finish_reason {e.finish_reasons.get(0)}); {place}"
    if e.error:
        summary += f"; but {e.error}"
    return Finding(key, label, summary, {"supported": "content" in kinds, "error": e.error})


def sse_keepalive(streams: list[Exchange]) -> Finding:
    key, label = "sse_keepalive", "SSE keep-alives"
    comments = [c for e in streams for c in e.comment_lines]
    empty = sum(e.empty_data_events for e in streams)
    value = {"comment_lines": len(comments), "empty_data_events": empty}
    parts = []
    if comments:
        parts.append(f"{len(comments)} comment lines (e.g. {comments[0][:30]!r})")
    if empty:
        parts.append(f"{empty} empty data events")
    if not parts:
        return Finding(key, label, f"none seen in {len(streams)} short streams", value)
    return Finding(key, label, ", ".join(parts) + " (ignored by bench)", value)


def http_keepalive(exchanges: list[Exchange]) -> Finding:
    """Whether the connection served the next request: a request reused a pooled connection,
    or opened a new one (the server closed the last), or found the pooled one dead (reconnect)."""
    key, label = "http_keepalive", "HTTP keep-alive"
    answered = [e for e in exchanges if e.headers]  # a response came (headers kept)
    later = answered[1:]
    reused = sum(e.reused_connection for e in later)
    reconnects = sum(e.reconnected for e in later)
    advertised = _advertised(answered[0].headers) if answered else None
    value = {"later_requests": len(later), "reused": reused, "reconnects": reconnects, "advertised": advertised}
    if not later:
        return Finding(key, label, "unknown: fewer than two answers", value)
    said = f"; advertises `{advertised}`" if advertised else ""
    if reused == len(later):
        return Finding(key, label, f"kept open: {reused} of {len(later)} later requests reused it{said}", value)
    stale = f", {reconnects} found the pooled one closed and reconnected" if reconnects else ""
    head = "closed after each stream" if reused == 0 else "sometimes closed"
    return Finding(key, label, f"{head}: {reused} of {len(later)} later requests reused it{stale}{said}", value)


def _advertised(headers: Mapping[str, str]) -> str | None:
    connection, keep_alive = headers.get("connection"), headers.get("keep-alive")
    parts = [f"Connection: {connection}" if connection else None, f"Keep-Alive: {keep_alive}" if keep_alive else None]
    return ", ".join(p for p in parts if p) or None


def server_timings(streams: list[Exchange]) -> Finding:
    key, label = "server_timings", "server timings"
    found = next((e.server_timings for e in streams if e.server_timings), None)
    if not found:
        return Finding(key, label, "none", {"fields": []})
    timed = [e for e in streams if e.server_timings]
    carrying = sum(1 for e in timed for p in e.objects() if isinstance(p.get("timings"), dict))
    where = "every chunk" if carrying >= sum(e.output_chunks() for e in timed) else "final chunk"
    names = list(found)
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return Finding(key, label, f"`timings` in the {where} ({shown})", {"fields": names, "where": where})


def request_id(streams: list[Exchange]) -> Finding:
    key, label = "request_id", "request id header"
    names = [h for h in REQUEST_ID_HEADERS if any(h in e.headers for e in streams)]
    if not names:
        return Finding(key, label, "none", {"headers": [], "matches_chunk_id": None})
    first = next(e for e in streams if names[0] in e.headers)
    chunk_id = next((p.get("id") for p in first.objects() if p.get("id")), None)
    same = chunk_id is not None and first.headers[names[0]] == chunk_id
    note = " (equals the chunk `id`)" if same else ""
    return Finding(key, label, ", ".join(f"`{h}`" for h in names) + note,
                   {"headers": names, "matches_chunk_id": same})


# -- what bench will measure -------------------------------------------------------------


def measures(dialect: tuple[Finding, ...]) -> tuple[Finding, ...]:
    """What bench's metrics mean on a server with this dialect."""
    rows = {f.key: f.value for f in dialect}
    return tuple(rule(rows) for rule in MEASURE_RULES)


def _ttft(rows: Mapping[str, Any]) -> Finding:
    role = rows["role_first_chunk"] or {}
    reasoning = rows["reasoning_field"]["fields"]
    named = f" ({', '.join(reasoning)})" if reasoning else ""
    summary = f"from the first content, reasoning{named} or tool-call chunk"
    if role.get("role_only"):
        summary += "; the role-only first chunk is not a token"
        early = role.get("ms_before_first_token")
        if early is not None and early >= 1.0:  # tools that count it report a TTFT this much lower
            summary += f" (it came {early:.0f} ms earlier)"
    return Finding("ttft", "TTFT", summary)


def _output_tokens(rows: Mapping[str, Any]) -> Finding:
    final = rows["usage_final"] or {}
    tpc = rows["tokens_per_chunk"]["mean"]
    if final.get("with_include_usage"):
        summary = "server usage (bench sends include_usage)"
    elif rows["usage_continuous"].get("supported"):
        summary = "running usage on each chunk"
    else:
        summary = "ESTIMATES: no usage, so one token per chunk"
        if tpc is not None and tpc > ONE_TOKEN_PER_CHUNK:
            summary += " (undercounts multi-token chunks)"
    return Finding("output_tokens", "output tokens", summary)


def _itl(rows: Mapping[str, Any]) -> Finding:
    tpc = rows["tokens_per_chunk"]["mean"]
    if tpc is None:
        return Finding("itl", "ITL", "gaps between chunks; tokens per chunk unknown, so maybe not per token")
    if tpc <= ONE_TOKEN_PER_CHUNK:
        return Finding("itl", "ITL", "gaps between chunks = per token (about 1 token per chunk)")
    return Finding("itl", "ITL", f"gaps between chunks of ~{tpc:.1f} tokens: not per token; use TPOT")


def _tpot(rows: Mapping[str, Any]) -> Finding:
    exact = (rows["usage_final"] or {}).get("with_include_usage") or rows["usage_continuous"].get("supported")
    source = "server usage" if exact else "chunk counts (estimate)"
    return Finding("tpot", "TPOT", f"(E2E - TTFT) / (output tokens - 1), tokens from {source}")


def _end(rows: Mapping[str, Any]) -> Finding:
    done = rows["done"]
    if done["streams"] and done["with_done"] == done["streams"]:
        return Finding("end", "end of stream", "[DONE] (or every choice finished)")
    return Finding("end", "end of stream", "every choice's finish_reason (no [DONE] needed)")


def _timings(rows: Mapping[str, Any]) -> Finding:
    if rows["server_timings"]["fields"]:
        return Finding("server_timings", "server timings", "kept per request (`timings`): check TTFT/E2E against them")
    return Finding("server_timings", "server timings", "none: client-side times only")


def _connections(rows: Mapping[str, Any]) -> Finding:
    ka = rows["http_keepalive"]
    if ka["later_requests"] and ka["reused"] == ka["later_requests"]:
        return Finding("connections", "connections", "pooled and reused")
    return Finding("connections", "connections",
                   "a new one per request (outside TTFT: timed from the last request byte); "
                   "a dead pooled one is retried once and marked `reconnected`")


MEASURE_RULES: tuple[Callable[[Mapping[str, Any]], Finding], ...] = (
    _ttft, _output_tokens, _itl, _tpot, _end, _timings, _connections)


# -- output ------------------------------------------------------------------------------


def print_report(report: ProbeReport) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = max(console.width, 140)  # a file or pipe has no width to fit, unless told
    console.print(Text(f"{report.target}: {report.base_url}, model {report.model}"))
    for title, rows in (("server dialect", report.dialect), ("what bench will measure", report.measures)):
        table = Table(title=title, title_justify="left", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for finding in rows:  # Text: "[DONE]" is not rich markup
            table.add_row(Text(finding.label), Text(finding.summary))
        console.print(table)
