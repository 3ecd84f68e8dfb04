"""Every metric's definition, as pure functions over the stored frames.

Definitions (also in the README):
- first token: the first chunk carrying generated output of any kind (content, reasoning,
  tool call, legacy function_call, refusal; `text` on /v1/completions); a role-only chunk
  never counts. Last token: the last such chunk (the usage chunk and [DONE] excluded).
- TTFT = first token - sent. E2E = last token - sent.
- output tokens: the server's `usage.completion_tokens` when given (token_source=usage),
  else the sum over token chunks of their token count, 1 when unknown (token_source=chunks).
- TPOT = (E2E - TTFT) / (output tokens per choice - 1), for requests with >= 2 tokens.
- ITL: every gap between consecutive token-carrying chunks of one choice, pooled.
- sent = the moment the last request byte was written to the socket (aiohttp trace hook);
  schedule lag = sent - scheduled; client overhead = sent - submitted (SDK build + write).
Inputs are never modified; every function returns a new frame or series.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench.records import OUTPUT_KINDS

TOKEN_KINDS = OUTPUT_KINDS  # every generated delta counts: text, reasoning, tool calls, refusals
PERCENTILES = (50, 90, 95, 99, 99.9)


def token_chunks(chunks: pd.DataFrame) -> pd.DataFrame:
    return chunks[chunks["kind"].isin(TOKEN_KINDS)]


def per_request(raw: pd.DataFrame, chunks: pd.DataFrame) -> pd.DataFrame:
    """The raw request columns plus every derived per-request metric."""
    return per_request_from_stats(raw, token_stats(chunks))


def token_stats(chunks: pd.DataFrame) -> pd.DataFrame:
    """Per request having token chunks (index `request_id`): `first_token_s`, `last_token_s`,
    and `chunk_tokens`, the sum of the chunks' token counts (1 when unknown)."""
    tok = token_chunks(chunks)
    grouped = tok.groupby("request_id", sort=False)
    return pd.DataFrame({
        "first_token_s": grouped["t_s"].min(),
        "last_token_s": grouped["t_s"].max(),
        "chunk_tokens": tok["tokens"].fillna(1).astype("int64").groupby(tok["request_id"]).sum(),
    })


def per_request_from_stats(raw: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """`per_request` from token statistics already computed (`token_stats`, or
    `chunkscan.scan` over stored chunks without a chunk frame)."""
    out = raw.copy()
    ids = out["request_id"]
    out["first_token_s"] = ids.map(stats["first_token_s"]).astype("float64")
    out["last_token_s"] = ids.map(stats["last_token_s"]).astype("float64")
    chunk_tokens = ids.map(stats["chunk_tokens"]).fillna(0).astype("int64")
    usage = out["usage_completion_tokens"].astype("Float64")
    out["output_tokens"] = usage.fillna(chunk_tokens.astype("Float64")).astype("Int64")
    out["token_source"] = np.where(usage.notna().to_numpy(dtype=bool), "usage", "chunks")
    out["prompt_tokens"] = out["usage_prompt_tokens"].astype("Int64")
    out["schedule_lag_ms"] = (out["sent_s"] - out["scheduled_s"]) * 1e3
    submitted = out["submitted_s"] if "submitted_s" in out else np.nan
    out["client_overhead_ms"] = (out["sent_s"] - submitted) * 1e3
    out["ttft_ms"] = (out["first_token_s"] - out["sent_s"]) * 1e3
    out["e2e_ms"] = (out["last_token_s"] - out["sent_s"]) * 1e3
    per_choice = out["output_tokens"].astype("float64") / out["n"].clip(lower=1).astype("float64")
    decode_tokens = (per_choice - 1).where(per_choice >= 2)
    out["tpot_ms"] = (out["e2e_ms"] - out["ttft_ms"]) / decode_tokens
    out["output_tokens_per_s"] = out["output_tokens"].astype("float64") / (out["e2e_ms"] / 1e3)
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


def itl_gaps(chunks: pd.DataFrame) -> pd.DataFrame:
    """One row per gap between consecutive token chunks of the same (request, choice)."""
    tok = token_chunks(chunks)
    if not _grouped_in_time_order(tok):
        tok = tok.sort_values(["request_id", "choice", "t_s"], kind="stable")
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


def _grouped_in_time_order(tok: pd.DataFrame) -> bool:
    """True when each (request, choice) already forms one run of rows in time order, as
    stored chunks of single-choice requests do: the sort (the slowest step on millions of
    chunks) can be skipped, the gaps are the same."""
    if len(tok) < 2:
        return True
    choice = tok["choice"].to_numpy()
    if (choice != choice[0]).any():
        return False
    ids = tok["request_id"].to_numpy()
    same = ids[1:] == ids[:-1]
    if (np.diff(tok["t_s"].to_numpy())[same] < 0).any():
        return False
    runs = int(np.count_nonzero(~same)) + 1
    return runs == len(pd.unique(ids))


def distribution(values: pd.Series | np.ndarray, overwrite: bool = False) -> dict[str, float | int | None]:
    """count, mean, percentiles and max of the finite values (None when there are none).

    `overwrite=True` lets the percentiles reorder a float64 array in place instead of
    copying it (125M ITL gaps are 1 GB); the caller must not need its order afterwards.
    """
    arr = np.asarray(values, dtype="float64")
    finite = np.isfinite(arr)
    if not finite.all():
        arr, overwrite = arr[finite], True  # a copy of our own
    del finite
    if arr.size == 0:
        return {"count": 0, "mean": None, **{_pname(p): None for p in PERCENTILES}, "max": None}
    mean, top = float(arr.mean()), float(arr.max())  # before the percentiles reorder the array
    qs = np.percentile(arr, PERCENTILES, overwrite_input=overwrite)
    return {
        "count": int(arr.size),
        "mean": mean,
        **{_pname(p): float(q) for p, q in zip(PERCENTILES, qs, strict=True)},
        "max": top,
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


def token_rate(chunks: pd.DataFrame, bin_s: float = 1.0) -> pd.DataFrame:
    """Output tokens per second in consecutive `bin_s` bins from t=0: `t_s` (bin start), `tokens_per_s`.

    A chunk counts its `tokens` when the server said, else 1 (as in `per_request`). The last
    bin is divided by the time it covers up to the last token, not by `bin_s`: a run ending
    just after a bin boundary would otherwise show a collapse of throughput that never was.
    """
    tok = token_chunks(chunks)
    t = tok["t_s"].to_numpy(dtype="float64")
    counts = tok["tokens"].fillna(1).to_numpy(dtype="float64")
    return token_rate_from_bins(token_bins(t, counts, bin_s), float(t.max()) if t.size else 0.0, bin_s)


def token_bins(t_s: np.ndarray, tokens: np.ndarray, bin_s: float) -> np.ndarray:
    """Tokens in each `bin_s` bin from t=0 (the sums `token_rate` divides); bins of
    separate batches of chunks add up, the shorter array padded with zeros."""
    if bin_s <= 0:
        raise ValueError("bin_s must be positive")
    bins = np.floor(np.clip(t_s, 0.0, None) / bin_s).astype("int64")
    return np.bincount(bins, weights=np.asarray(tokens, dtype="float64"))


def token_rate_from_bins(sums: np.ndarray, last_t_s: float, bin_s: float) -> pd.DataFrame:
    """`token_rate` from its bin sums and the last token chunk's time."""
    if sums.size == 0:
        return pd.DataFrame({"t_s": np.empty(0), "tokens_per_s": np.empty(0)})
    spans = np.full(sums.size, bin_s)
    spans[-1] = max(last_t_s - (sums.size - 1) * bin_s, 1e-3 * bin_s)
    return pd.DataFrame({"t_s": np.arange(sums.size) * bin_s, "tokens_per_s": sums / spans})


def meets_slo(requests: pd.DataFrame, limits: dict[str, float]) -> pd.Series:
    """Per request: ok and every given metric at or under its limit (a missing value fails)."""
    meets = requests["status"] == "ok"
    for metric, limit in limits.items():
        values = requests[metric]
        if metric == "tpot_ms":
            # A one-token answer has no TPOT; it cannot break a per-token limit.
            meets &= values.isna() | (values <= limit)
            meets &= requests["ttft_ms"].notna()
        else:
            meets &= values.notna() & (values <= limit)
    return meets.astype(bool)
