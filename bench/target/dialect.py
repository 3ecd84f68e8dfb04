"""The server's stream dialect, read from the probe's exchanges: one `Finding` per question.

Pure functions: `analyse` takes the exchanges by name (`bench.target.probe_requests`) and
returns the rows in display order (role-only first chunk, usage, reasoning fields, `[DONE]`,
tokens per chunk, n=2, stop sequences, /v1/completions, keep-alives, server timings,
request ids).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from bench.records import CHUNK_KINDS, OUTPUT_KIND_CODES
from bench.target.probe_requests import REQUEST_ID_HEADERS, Exchange

__all__ = ["KNOWN_DELTA_FIELDS", "REASONING_FIELDS", "Finding", "analyse"]

KNOWN_DELTA_FIELDS = {"role", "content", "reasoning_content", "reasoning", "tool_calls", "function_call",
                      "refusal"}
REASONING_FIELDS = ("reasoning_content", "reasoning")


@dataclass(frozen=True)
class Finding:
    """One row: `summary` for people, `value` (JSON-able) for machines."""

    key: str
    label: str
    summary: str
    value: Any = None



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
    outputs = [tok for kind, tok in zip(e.chunk_kinds, e.chunk_tokens, strict=False) if kind in OUTPUT_KIND_CODES]
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
    said = [tok for kind, tok in zip(continuous.chunk_kinds, continuous.chunk_tokens, strict=False)
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
    order = [c for kind, c in zip(e.chunk_kinds, e.chunk_choices, strict=False) if kind in OUTPUT_KIND_CODES]
    choices = sorted(set(order))
    switches = sum(1 for a, b in pairwise(order) if a != b)
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
