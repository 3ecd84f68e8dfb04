"""Per-request metrics from the scan's token statistics, and the run-level quantities.

Definitions (also in the README; first token, last token, chunk tokens and ITL are defined
where they are computed, in `bench.metrics.scan`):
- TTFT = first token - sent. E2E = last token - sent; for a non-streamed answer
  (embeddings), which has no tokens, the arrival of its body's last byte (`body_s`) - sent.
- output tokens: the server's `usage.completion_tokens` when given (token_source=usage),
  else the chunk tokens (token_source=chunks).
- TPOT = (E2E - TTFT) / (output tokens per choice - 1), for requests with >= 2 tokens.
- sent = the moment the last request byte was written to the socket;
  schedule lag = sent - scheduled; client overhead = sent - submitted (SDK build + write).
Columns are named by the catalogue (`bench.metrics.catalogue`). Inputs are never modified;
every function returns a new frame or series.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench.metrics import scan
from bench.metrics.catalogue import (
    E2E,
    OUTPUT_TOKENS,
    REQUEST_OUTPUT_TOKENS_PER_S,
    SCHEDULE_LAG,
    STATUS_OK,
    TPOT,
    TTFT,
)

__all__ = [
    "in_flight_over_time",
    "meets_slo",
    "peak_concurrency",
    "per_request",
    "per_request_from_stats",
    "send_rate",
    "server_timing_columns",
]


def per_request(raw: pd.DataFrame, chunks: pd.DataFrame) -> pd.DataFrame:
    """The raw request columns plus every derived per-request metric, from a chunk frame
    held in memory (`store.read_chunks` columns), through the same scan as stored chunks."""
    return per_request_from_stats(raw, scan.scan_frame(chunks, []).stats)


def per_request_from_stats(raw: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """`per_request` from token statistics already computed (`scan.ScanResult.stats`)."""
    out = raw.copy()
    ids = out["request_id"]
    out["first_token_s"] = ids.map(stats["first_token_s"]).astype("float64")
    out["last_token_s"] = ids.map(stats["last_token_s"]).astype("float64")
    chunk_tokens = ids.map(stats["chunk_tokens"]).fillna(0).astype("int64")
    usage = out["usage_completion_tokens"].astype("Float64")
    out[OUTPUT_TOKENS.key] = usage.fillna(chunk_tokens.astype("Float64")).astype("Int64")
    # A non-streamed answer (embeddings: `body_s` set) generates no tokens: absent, not zero.
    body_s = out["body_s"].astype("float64") if "body_s" in out else pd.Series(np.nan, index=out.index)
    unary = body_s.notna()
    out.loc[unary, OUTPUT_TOKENS.key] = pd.NA
    out["token_source"] = np.where(usage.notna().to_numpy(dtype=bool), "usage", "chunks")
    out.loc[unary.to_numpy(dtype=bool), "token_source"] = "none"
    out["prompt_tokens"] = out["usage_prompt_tokens"].astype("Int64")
    out[SCHEDULE_LAG.key] = (out["sent_s"] - out["scheduled_s"]) * 1e3
    submitted = out["submitted_s"] if "submitted_s" in out else np.nan
    out["client_overhead_ms"] = (out["sent_s"] - submitted) * 1e3
    out[TTFT.key] = (out["first_token_s"] - out["sent_s"]) * 1e3
    out[E2E.key] = (out["last_token_s"].fillna(body_s) - out["sent_s"]) * 1e3
    per_choice = out[OUTPUT_TOKENS.key].astype("float64") / out["n"].clip(lower=1).astype("float64")
    decode_tokens = (per_choice - 1).where(per_choice >= 2)
    out[TPOT.key] = (out[E2E.key] - out[TTFT.key]) / decode_tokens
    out[REQUEST_OUTPUT_TOKENS_PER_S.key] = out[OUTPUT_TOKENS.key].astype("float64") / (out[E2E.key] / 1e3)
    out["duration_ms"] = (out["end_s"] - out["sent_s"]) * 1e3
    return out.join(server_timing_columns(out))


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
