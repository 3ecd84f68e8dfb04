"""Reasoning phases of each request, from its stored chunks: one pass beside the scan.

A reasoning model streams its thinking as `reasoning` chunks (`reasoning_content` or
`reasoning` deltas) before the answer. Definitions, per request (all choices together):
- first reasoning token: its first chunk of kind reasoning.
- answer chunks: every other output kind (content, tool call, legacy function_call,
  refusal); first / last answer token: the first / last of them. A chunk carrying both
  reasoning and content is recorded as content (`records`), so it opens the answer.
- reasoning / answer chunk tokens: the sum over those chunks of their tokens (1 when the
  server did not say).

Only requests with at least one reasoning chunk are listed: for every other request the
answer is its whole output, i.e. the scan's first / last token and chunk tokens.

Stored batches hold whole records in order, so only a batch's first and last request can
continue in a neighbouring batch; those two are always aggregated, and min / max / sum
combine across batches. A file whose requests' chunks are scattered (not written by
bench) may lose the answer side of a request whose reasoning sits in another batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from bench.records import KIND_REASONING, NO_TOKENS, OUTPUT_KIND_TABLE, OUTPUT_KINDS, ChunkBatch

__all__ = ["ANSWER_KINDS", "PHASE_COLUMNS", "PhaseScan", "phase_stats"]

ANSWER_KINDS = tuple(k for k in OUTPUT_KINDS if k != "reasoning")
# column -> how parts of one request combine (first/last times as seconds from t0)
_AGG = {"reasoning_first_s": "min", "answer_first_s": "min", "answer_last_s": "max",
        "reasoning_chunk_tokens": "sum", "answer_chunk_tokens": "sum"}
PHASE_COLUMNS = tuple(_AGG)


class PhaseScan:
    """Collects phase statistics from chunk batches as another pass reads them.

    `observe(batches)` yields the batches unchanged, feeding each to the statistics on the
    first complete pass only (a scan that reads the batches twice adds nothing twice).
    """

    def __init__(self) -> None:
        self._parts: list[pd.DataFrame] = []
        self._done = False

    def observe(self, batches: Iterable[ChunkBatch]) -> Iterator[ChunkBatch]:
        feed = not self._done
        for batch in batches:
            if feed:
                self.add(batch)
            yield batch
        self._done = True

    def add(self, batch: ChunkBatch) -> None:
        ids = batch.request_id
        reasoning = batch.kind == KIND_REASONING
        if ids.size == 0 or not reasoning.any():
            return
        wanted = np.unique(np.concatenate([ids[reasoning], ids[:1], ids[-1:]]))
        rows = np.isin(ids, wanted) & OUTPUT_KIND_TABLE[batch.kind.view(np.uint8)]
        t, is_reasoning = batch.t_s[rows], reasoning[rows]
        tokens = batch.tokens[rows]
        counted = np.where(tokens == NO_TOKENS, 1, tokens).astype(np.int64)
        part = pd.DataFrame({
            "request_id": ids[rows].astype(np.int64),
            "reasoning_first_s": np.where(is_reasoning, t, np.inf),
            "answer_first_s": np.where(is_reasoning, np.inf, t),
            "answer_last_s": np.where(is_reasoning, -np.inf, t),
            "reasoning_chunk_tokens": np.where(is_reasoning, counted, 0),
            "answer_chunk_tokens": np.where(is_reasoning, 0, counted),
        })
        self._parts.append(part.groupby("request_id").agg(_AGG))

    def stats(self) -> pd.DataFrame:
        """Index request_id (requests with reasoning only), PHASE_COLUMNS; an answer time is
        NaN when the request has no answer chunk."""
        if not self._parts:
            empty = {name: pd.Series(dtype="int64" if "tokens" in name else "float64") for name in _AGG}
            return pd.DataFrame(empty, index=pd.Index([], dtype="int64", name="request_id"))
        frame = pd.concat(self._parts).groupby(level=0).agg(_AGG)
        frame = frame[np.isfinite(frame["reasoning_first_s"])]
        return frame.replace([np.inf, -np.inf], np.nan)


def phase_stats(batches: Iterable[ChunkBatch]) -> pd.DataFrame:
    """`PhaseScan.stats` of the given batches."""
    collector = PhaseScan()
    for _ in collector.observe(batches):
        pass
    return collector.stats()
