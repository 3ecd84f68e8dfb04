"""Every metric's definition, as pure functions over the stored frames.

Definitions (also in the README):
- first token: the first chunk carrying generated text (content or reasoning); a role-only
  chunk never counts. Last token: the last such chunk (the usage chunk and [DONE] excluded).
- TTFT = first token - sent. E2E = last token - sent.
- output tokens: the server's `usage.completion_tokens` when given (token_source=usage),
  else the sum over token chunks of their token count, 1 when unknown (token_source=chunks).
- TPOT = (E2E - TTFT) / (output tokens per choice - 1), for requests with >= 2 tokens.
- ITL: every gap between consecutive token-carrying chunks of one choice, pooled.
- schedule lag = sent - scheduled.
Inputs are never modified; every function returns a new frame or series.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TOKEN_KINDS = ("content", "reasoning")
PERCENTILES = (50, 90, 95, 99, 99.9)


def token_chunks(chunks: pd.DataFrame) -> pd.DataFrame:
    return chunks[chunks["kind"].isin(TOKEN_KINDS)]


def per_request(raw: pd.DataFrame, chunks: pd.DataFrame) -> pd.DataFrame:
    """The raw request columns plus every derived per-request metric."""
    tok = token_chunks(chunks)
    grouped = tok.groupby("request_id", sort=False)
    first = grouped["t_s"].min()
    last = grouped["t_s"].max()
    counted = tok["tokens"].fillna(1).astype("int64").groupby(tok["request_id"]).sum()
    out = raw.copy()
    ids = out["request_id"]
    out["first_token_s"] = ids.map(first).astype("float64")
    out["last_token_s"] = ids.map(last).astype("float64")
    chunk_tokens = ids.map(counted).fillna(0).astype("int64")
    usage = out["usage_completion_tokens"].astype("Float64")
    out["output_tokens"] = usage.fillna(chunk_tokens.astype("Float64")).astype("Int64")
    out["token_source"] = np.where(usage.notna().to_numpy(dtype=bool), "usage", "chunks")
    out["prompt_tokens"] = out["usage_prompt_tokens"].astype("Int64")
    out["schedule_lag_ms"] = (out["sent_s"] - out["scheduled_s"]) * 1e3
    out["ttft_ms"] = (out["first_token_s"] - out["sent_s"]) * 1e3
    out["e2e_ms"] = (out["last_token_s"] - out["sent_s"]) * 1e3
    per_choice = out["output_tokens"].astype("float64") / out["n"].clip(lower=1).astype("float64")
    decode_tokens = (per_choice - 1).where(per_choice >= 2)
    out["tpot_ms"] = (out["e2e_ms"] - out["ttft_ms"]) / decode_tokens
    out["output_tokens_per_s"] = out["output_tokens"].astype("float64") / (out["e2e_ms"] / 1e3)
    out["duration_ms"] = (out["end_s"] - out["sent_s"]) * 1e3
    return out


def itl_gaps(chunks: pd.DataFrame) -> pd.DataFrame:
    """One row per gap between consecutive token chunks of the same (request, choice)."""
    tok = token_chunks(chunks).sort_values(["request_id", "choice", "t_s"], kind="stable")
    same = (tok["request_id"].to_numpy()[1:] == tok["request_id"].to_numpy()[:-1]) & (
        tok["choice"].to_numpy()[1:] == tok["choice"].to_numpy()[:-1]
    )
    t = tok["t_s"].to_numpy()
    gaps = (t[1:] - t[:-1])[same] * 1e3
    return pd.DataFrame({
        "request_id": tok["request_id"].to_numpy()[1:][same],
        "t_s": t[1:][same],
        "itl_ms": gaps,
    })


def distribution(values: pd.Series | np.ndarray) -> dict[str, float | int | None]:
    """count, mean, percentiles and max of the finite values (None when there are none)."""
    arr = np.asarray(values, dtype="float64")
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {"count": 0, "mean": None, **{_pname(p): None for p in PERCENTILES}, "max": None}
    qs = np.percentile(arr, PERCENTILES)
    return {
        "count": int(arr.size),
        "mean": float(arr.mean()),
        **{_pname(p): float(q) for p, q in zip(PERCENTILES, qs, strict=True)},
        "max": float(arr.max()),
    }


def _pname(p: float) -> str:
    return f"p{p:g}"


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
