"""What bench will measure on a server with a given dialect: one `Finding` per metric.

Pure: `measures` takes the dialect rows of `bench.target.dialect.analyse` and says what
TTFT, output tokens, ITL, TPOT, the end of a stream, server timings and connections mean
on that server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bench.target.dialect import Finding

__all__ = ["MEASURE_RULES", "measures"]

ONE_TOKEN_PER_CHUNK = 1.1  # at most this many tokens per chunk on average: ITL is per token


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
