"""Test oracles: the metrics' definitions written the plain pandas way, over a chunk frame.

The product computes every metric once, streaming over stored chunk batches
(`bench.metrics.scan`); these frame forms are independent re-statements of the same
definitions (README "Metric definitions"), kept only so tests can compare the two.
Never imported by the package.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.metrics.derive import per_request_from_stats

# Written out, not imported: the oracle must not share the product's list.
TOKEN_KINDS = ("content", "reasoning", "tool_call", "function_call", "refusal")


def token_chunks(chunks: pd.DataFrame) -> pd.DataFrame:
    return chunks[chunks["kind"].isin(TOKEN_KINDS)]


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


def phase_stats(chunks: pd.DataFrame) -> pd.DataFrame:
    """Per request having reasoning chunks: its first reasoning chunk, first and last answer
    chunk (any other token kind), and the token counts (1 when unknown) of each phase."""
    tok = token_chunks(chunks).copy()
    tok["counted"] = tok["tokens"].fillna(1).astype("int64")
    reasoning = tok[tok["kind"] == "reasoning"]
    answer = tok[(tok["kind"] != "reasoning") & tok["request_id"].isin(reasoning["request_id"])]
    by_r, by_a = reasoning.groupby("request_id"), answer.groupby("request_id")
    frame = pd.DataFrame({"reasoning_first_s": by_r["t_s"].min(), "answer_first_s": by_a["t_s"].min(),
                          "answer_last_s": by_a["t_s"].max(), "reasoning_chunk_tokens": by_r["counted"].sum(),
                          "answer_chunk_tokens": by_a["counted"].sum()})
    frame["answer_chunk_tokens"] = frame["answer_chunk_tokens"].fillna(0).astype("int64")
    return frame


def per_request(raw: pd.DataFrame, chunks: pd.DataFrame) -> pd.DataFrame:
    """`derive.per_request` with the token statistics taken from the oracle."""
    return per_request_from_stats(raw, token_stats(chunks), phase_stats(chunks))


def itl_gaps(chunks: pd.DataFrame) -> pd.DataFrame:
    """One row per gap between consecutive token chunks of the same (request, choice):
    `request_id`, `t_s` (the closing chunk's), `itl_ms`."""
    tok = token_chunks(chunks).sort_values(["request_id", "choice", "t_s"], kind="stable")
    same = (tok["request_id"].to_numpy()[1:] == tok["request_id"].to_numpy()[:-1]) & (
        tok["choice"].to_numpy()[1:] == tok["choice"].to_numpy()[:-1]
    )
    t = tok["t_s"].to_numpy()
    return pd.DataFrame({
        "request_id": tok["request_id"].to_numpy()[1:][same],
        "t_s": t[1:][same],
        "itl_ms": (t[1:] - t[:-1])[same] * 1e3,
    })


def token_rate(chunks: pd.DataFrame, bin_s: float = 1.0) -> pd.DataFrame:
    """Output tokens per second in `bin_s` bins from t=0 (`t_s`, `tokens_per_s`); a chunk
    counts its tokens, 1 when unknown; the last bin is divided by the time up to the last
    token chunk."""
    if bin_s <= 0:
        raise ValueError("bin_s must be positive")
    tok = token_chunks(chunks)
    if tok.empty:
        return pd.DataFrame({"t_s": np.empty(0), "tokens_per_s": np.empty(0)})
    bins = (tok["t_s"].clip(lower=0.0) // bin_s).astype("int64")
    sums = tok["tokens"].fillna(1).astype("float64").groupby(bins).sum()
    sums = sums.reindex(range(int(bins.max()) + 1), fill_value=0.0)
    spans = np.full(len(sums), bin_s)
    spans[-1] = max(float(tok["t_s"].max()) - (len(sums) - 1) * bin_s, 1e-3 * bin_s)
    return pd.DataFrame({"t_s": np.arange(len(sums)) * bin_s, "tokens_per_s": sums.to_numpy() / spans})
