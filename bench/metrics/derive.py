"""Per-request metrics from the scan's token statistics, and the run-level quantities.

Definitions (also in the README; first token, last token, chunk tokens and ITL are defined
where they are computed, in `bench.metrics.scan`):
- TTFT = first token - sent. E2E = last token - sent; for a non-streamed answer
  (embeddings), which has no tokens, the arrival of its body's last byte (`body_s`) - sent.
- output tokens: the first count a request has of, in this order (its `token_source`): the
  server's `usage.completion_tokens` (usage), the server's own /tokenize of the answer's text
  (server_tokenize), a local tokenizer.json's count of it (tokenizer), the chunk tokens
  (chunks); the last three come after the run when the scenario opts in (`tokens:`,
  `bench.store.token_counts`). Usage comes first: it counts the token ids the server
  generated, which re-tokenising their decoded text only approximates (special tokens such
  as EOS leave no text; a model may generate a non-canonical split). Chunks count events.
- token count difference = output tokens - the next count in that order other than chunks
  (`token_check_source`), when a request has two; relative = |difference| / max(check, 1).
- TPOT = (E2E - TTFT) / (output tokens per choice - 1), for requests with >= 2 tokens.
- sent = the moment the last request byte was written to the socket;
  schedule lag = sent - scheduled; client overhead = sent - submitted (SDK build + write).
- Reasoning phases (first reasoning / answer token: `bench.metrics.phases`):
  time to first reasoning token = first reasoning token - sent; time to first answer token
  = first answer token - sent (TTFT when there is no reasoning); reasoning time = first
  answer token - first reasoning token; reasoning tokens = the server's
  `usage.completion_tokens_details.reasoning_tokens` when given, else the reasoning chunk
  tokens; answer tokens = usage completion - usage reasoning tokens when both are given,
  else the answer chunk tokens (all output tokens when there is no reasoning);
  answer TPOT = (last answer token - first answer token) / (answer tokens per choice - 1),
  for requests with >= 2 answer tokens per choice.
- cached tokens = the server's `usage.prompt_tokens_details.cached_tokens` (NaN when not given).
- From the schedule (open loop, coordinated-omission-corrected): TTFT from schedule = first
  token - scheduled, E2E from schedule = last token (or body) - scheduled; each is the
  metric from the real send plus the request's schedule lag.
Columns are named by the catalogue (`bench.metrics.catalogue`). Inputs are never modified;
every function returns a new frame or series.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench.metrics import phases, scan
from bench.metrics.catalogue import (
    ANSWER_TPOT,
    CACHED_TOKENS,
    E2E,
    E2E_SCHEDULED,
    OUTPUT_TOKENS,
    REASONING_TIME,
    REASONING_TOKENS,
    REQUEST_OUTPUT_TOKENS_PER_S,
    SCHEDULE_LAG,
    STATUS_OK,
    TOKEN_COUNT_DIFF,
    TOKEN_COUNT_REL_DIFF,
    TPOT,
    TTFT,
    TTFT_ANSWER,
    TTFT_REASONING,
    TTFT_SCHEDULED,
)
from bench.store import TOKEN_SOURCES, frame_batch

__all__ = [
    "COUNTED_SOURCES",
    "in_flight_over_time",
    "meets_slo",
    "peak_concurrency",
    "per_request",
    "per_request_from_stats",
    "send_rate",
    "server_timing_columns",
    "token_columns",
]

# Sources that count tokens (chunks count events), in the order a request's metrics take them.
COUNTED_SOURCES = ("usage", *TOKEN_SOURCES)


def per_request(raw: pd.DataFrame, chunks: pd.DataFrame, token_counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """The raw request columns plus every derived per-request metric, from a chunk frame
    held in memory (`store.read_chunks` columns), through the same scan as stored chunks;
    `token_counts` as `store.read_token_counts` returns them."""
    return per_request_from_stats(raw, scan.scan_frame(chunks, []).stats,
                                  phases.phase_stats([frame_batch(chunks)]), token_counts)


def per_request_from_stats(raw: pd.DataFrame, stats: pd.DataFrame, phase_stats: pd.DataFrame | None = None,
                           token_counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """`per_request` from token statistics already computed (`scan.ScanResult.stats`), the
    reasoning phases (`phases.PhaseScan.stats`; None: not computed, the reasoning-phase
    columns are NaN) and the token counts made after the run (`store.read_token_counts`;
    None: none). The answers' kept texts (`output_texts`) are left out: they are counted."""
    out = raw.drop(columns=["output_texts"], errors="ignore")
    ids = out["request_id"]
    out["first_token_s"] = ids.map(stats["first_token_s"]).astype("float64")
    out["last_token_s"] = ids.map(stats["last_token_s"]).astype("float64")
    chunk_tokens = ids.map(stats["chunk_tokens"]).fillna(0).astype("int64")
    # A non-streamed answer (embeddings: `body_s` set) generates no tokens: absent, not zero.
    body_s = out["body_s"].astype("float64") if "body_s" in out else pd.Series(np.nan, index=out.index)
    token_columns(out, chunk_tokens, token_counts, body_s.notna().to_numpy(dtype=bool))
    out["prompt_tokens"] = out["usage_prompt_tokens"].astype("Int64")
    cached = out["usage_cached_tokens"] if "usage_cached_tokens" in out else pd.Series(np.nan, index=out.index)
    out[CACHED_TOKENS.key] = cached.astype("float64")
    out[SCHEDULE_LAG.key] = (out["sent_s"] - out["scheduled_s"]) * 1e3
    submitted = out["submitted_s"] if "submitted_s" in out else np.nan
    out["client_overhead_ms"] = (out["sent_s"] - submitted) * 1e3
    out[TTFT.key] = (out["first_token_s"] - out["sent_s"]) * 1e3
    out[E2E.key] = (out["last_token_s"].fillna(body_s) - out["sent_s"]) * 1e3
    out[TTFT_SCHEDULED.key] = (out["first_token_s"] - out["scheduled_s"]) * 1e3
    out[E2E_SCHEDULED.key] = (out["last_token_s"].fillna(body_s) - out["scheduled_s"]) * 1e3
    per_choice = out[OUTPUT_TOKENS.key].astype("float64") / out["n"].clip(lower=1).astype("float64")
    decode_tokens = (per_choice - 1).where(per_choice >= 2)
    out[TPOT.key] = (out[E2E.key] - out[TTFT.key]) / decode_tokens
    out[REQUEST_OUTPUT_TOKENS_PER_S.key] = out[OUTPUT_TOKENS.key].astype("float64") / (out[E2E.key] / 1e3)
    out["duration_ms"] = (out["end_s"] - out["sent_s"]) * 1e3
    out = out.join(server_timing_columns(out))
    if phase_stats is None:
        for metric in (TTFT_REASONING, TTFT_ANSWER, REASONING_TIME, REASONING_TOKENS, ANSWER_TPOT):
            out[metric.key] = np.nan
        return out
    return reasoning_columns(out, stats, phase_stats)


def token_columns(out: pd.DataFrame, chunk_tokens: pd.Series, token_counts: pd.DataFrame | None,
                  unary: np.ndarray) -> None:
    """Adds to `out` each source's output-token count (`output_tokens_<source>`, Int64), the
    output tokens and their `token_source`, the check count's `token_check_source` and the
    token count differences (see the module docstring). `unary` rows (non-streamed answers)
    generate no tokens: every count absent, `token_source` "none"."""
    ids = out["request_id"]
    columns = [out["usage_completion_tokens"].to_numpy(dtype="float64", na_value=np.nan)]
    for source in TOKEN_SOURCES:
        counted = np.full(len(out), np.nan)
        if token_counts is not None:
            mine = token_counts[token_counts["source"] == source]
            by_id = pd.Series(mine["count"].to_numpy(dtype="float64", na_value=np.nan),
                              index=mine["request_id"].to_numpy())
            counted = ids.map(by_id).to_numpy(dtype="float64", na_value=np.nan)
        columns.append(counted)
        out[f"output_tokens_{source}"] = _counts(counted, out.index)
    out["output_tokens_chunks"] = chunk_tokens
    counts = np.column_stack(columns)
    counts[unary] = np.nan
    known = ~np.isnan(counts)
    rank = np.cumsum(known, axis=1)
    used = np.argmax(known, axis=1)  # the first known count (0 when none: ignored below)
    check = np.argmax(known & (rank == 2), axis=1)
    rows = np.arange(len(out))
    has_used, has_check = known.any(axis=1), rank[:, -1] >= 2
    tokens = np.where(has_used, counts[rows, used], chunk_tokens.to_numpy(dtype="float64"))
    tokens[unary] = np.nan
    out[OUTPUT_TOKENS.key] = _counts(tokens, out.index)
    names = np.array(COUNTED_SOURCES, dtype=object)
    out["token_source"] = np.where(unary, "none", np.where(has_used, names[used], "chunks"))
    out["token_check_source"] = pd.Series(names[check], index=out.index).where(has_check).astype("string")
    diff = np.where(has_check, counts[rows, used] - counts[rows, check], np.nan)
    out[TOKEN_COUNT_DIFF.key] = diff
    out[TOKEN_COUNT_REL_DIFF.key] = np.abs(diff) / np.maximum(counts[rows, check], 1.0)


def _counts(values: np.ndarray, index: pd.Index) -> pd.Series:
    """Token counts (float64, NaN: unknown) as Int64 (NA: unknown)."""
    return pd.Series(values, index=index, dtype="Float64").astype("Int64")


def reasoning_columns(out: pd.DataFrame, stats: pd.DataFrame, phase_stats: pd.DataFrame) -> pd.DataFrame:
    """Adds the reasoning-phase metrics (see the module docstring) to `out`, a frame with
    the columns `per_request_from_stats` computes; returns it."""
    ids = out["request_id"]
    sent = out["sent_s"]
    reasoning_first = ids.map(phase_stats["reasoning_first_s"]).astype("float64")
    has = reasoning_first.notna()
    answer_first = ids.map(phase_stats["answer_first_s"]).astype("float64").where(has, out["first_token_s"])
    answer_last = ids.map(phase_stats["answer_last_s"]).astype("float64").where(has, out["last_token_s"])
    chunk_reasoning = ids.map(phase_stats["reasoning_chunk_tokens"]).astype("float64").fillna(0.0)
    chunk_answer = ids.map(phase_stats["answer_chunk_tokens"]).astype("float64").where(
        has, ids.map(stats["chunk_tokens"]).astype("float64"))
    usage_reasoning = (out["usage_reasoning_tokens"] if "usage_reasoning_tokens" in out
                       else pd.Series(np.nan, index=out.index)).astype("float64")
    usage_total = out["usage_completion_tokens"].astype("float64")
    reasoning_tokens = usage_reasoning.fillna(chunk_reasoning)
    answer_tokens = (usage_total - usage_reasoning).fillna(
        chunk_answer.where(has, out[OUTPUT_TOKENS.key].astype("float64")))
    out[TTFT_REASONING.key] = (reasoning_first - sent) * 1e3
    out[TTFT_ANSWER.key] = (answer_first - sent) * 1e3
    out[REASONING_TIME.key] = (answer_first - reasoning_first) * 1e3
    out[REASONING_TOKENS.key] = reasoning_tokens
    per_choice = answer_tokens / out["n"].clip(lower=1).astype("float64")
    out[ANSWER_TPOT.key] = (answer_last - answer_first) * 1e3 / (per_choice - 1).where(per_choice >= 2)
    return out


def server_timing_columns(requests: pd.DataFrame) -> pd.DataFrame:
    """The server's own per-request timings when it streams them (llama.cpp's `timings`):
    prompt processing ms (~ its TTFT) and generation ms after the first token."""
    names = {"prompt_ms": "server_prompt_ms", "predicted_ms": "server_predicted_ms",
             "prompt_n": "server_prompt_n", "predicted_n": "server_predicted_n"}
    columns = {new: np.full(len(requests), np.nan) for new in names.values()}
    if "server_timings" in requests:
        raw = requests["server_timings"]
        given = raw.notna().to_numpy(dtype=bool)  # only llama.cpp sends them: parse those rows only
        parsed = [json.loads(v) for v in raw[given]]
        for old, new in names.items():
            columns[new][given] = np.array([p.get(old) for p in parsed], dtype="float64")
    return pd.DataFrame(columns, index=requests.index)


def peak_concurrency(requests: pd.DataFrame) -> int:
    """Largest number of requests in flight at once (between sent and end)."""
    if requests.empty:
        return 0
    starts = requests["sent_s"].to_numpy()
    ends = requests["end_s"].to_numpy()
    times = np.concatenate([starts, ends])
    steps = np.concatenate([np.ones_like(starts), -np.ones_like(ends)])
    order = np.lexsort((steps, times))  # ends before starts at equal times
    return int(np.cumsum(steps[order]).max())


def send_rate(sent_s: pd.Series) -> float | None:
    """Achieved send rate: arrivals per second between the first and last send."""
    t = np.sort(np.asarray(sent_s, dtype="float64"))
    if t.size < 2 or t[-1] <= t[0]:
        return None
    return float((t.size - 1) / (t[-1] - t[0]))


def in_flight_over_time(requests: pd.DataFrame) -> pd.DataFrame:
    """Requests in flight (between sent and end) as a step function: `t_s, in_flight`.

    Each row holds the count from its `t_s` until the next row's; ends sort before starts
    at equal times, as in `peak_concurrency`.
    """
    frame = requests.dropna(subset=["sent_s", "end_s"])
    starts = frame["sent_s"].to_numpy(dtype="float64")
    ends = frame["end_s"].to_numpy(dtype="float64")
    times = np.concatenate([starts, ends])
    steps = np.concatenate([np.ones_like(starts), -np.ones_like(ends)])
    order = np.lexsort((steps, times))
    return pd.DataFrame({"t_s": times[order], "in_flight": np.cumsum(steps[order]).astype("int64")})


def meets_slo(requests: pd.DataFrame, limits: dict[str, float]) -> pd.Series:
    """Per request: ok and every given metric (`Metric.key` of an SLO metric) at or under
    its limit (a missing value fails)."""
    meets = requests["status"] == STATUS_OK
    for metric, limit in limits.items():
        values = requests[metric]
        if metric == TPOT.key:
            # A one-token answer has no TPOT; it cannot break a per-token limit.
            meets &= values.isna() | (values <= limit)
            meets &= requests[TTFT.key].notna()
        else:
            meets &= values.notna() & (values <= limit)
    return meets.astype(bool)
