"""One scan's accumulation over token rows (`bench.metrics.scan` feeds it batch by batch):
per request the first and last token time and the chunk tokens, and the kept requests'
ITL gaps, written into buffers allocated once when the number of rows is known."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from bench.metrics.gaps import ItlGaps
from bench.records import NO_TOKENS

__all__ = ["GrowBuffer", "RowScanner", "ScanResult", "TokenRows", "concat", "member"]


@dataclass(frozen=True)
class ScanResult:
    stats: pd.DataFrame  # index request_id: first_token_s, last_token_s, chunk_tokens
    gaps: ItlGaps  # of the kept requests only


class TokenRows(NamedTuple):
    """The token-carrying rows of a batch (content and reasoning chunks)."""

    request_id: np.ndarray
    t_s: np.ndarray
    tokens: np.ndarray
    choice: np.ndarray


class GrowBuffer:
    """Values appended batch by batch (float64 unless told): into one array allocated up front
    when the total is bounded (the untouched rest is never paged in), else into parts."""

    def __init__(self, bound: int | None, dtype: type = np.float64) -> None:
        self.dtype = dtype
        self._array: np.ndarray | None = np.empty(bound, dtype=dtype) if bound is not None else None
        self._parts: list[np.ndarray] = []
        self.filled = 0

    def slot(self, size: int) -> np.ndarray:
        """The next `size` places, to be written by the caller."""
        if self._array is None:
            self._parts.append(np.empty(size, dtype=self.dtype))
            out = self._parts[-1]
        else:
            out = self._array[self.filled:self.filled + size]
        self.filled += size
        return out

    def array(self) -> np.ndarray:
        return concat(self._parts, self.dtype) if self._array is None else self._array[:self.filled]

    def widened(self, bound: int | None, dtype: type) -> GrowBuffer:
        """A buffer of `dtype` holding these values."""
        wider = GrowBuffer(bound, dtype)
        filled = self.array()
        wider.slot(filled.size)[:] = filled
        return wider


class RowScanner:
    def __init__(self, keep: np.ndarray, rows: int | None, times: bool = False, block_s: float | None = None,
                 block_dtype: type = np.int32) -> None:
        self.keep = keep  # sorted unique request ids whose gaps are kept
        self._rows = rows
        self._values = GrowBuffer(rows)
        self._times = GrowBuffer(rows) if times else None
        self._block_s = block_s
        self._blocks = GrowBuffer(rows, block_dtype) if block_s is not None else None
        self._seg_ids: list[np.ndarray] = []
        self._first: list[np.ndarray] = []
        self._last: list[np.ndarray] = []
        self._tokens: list[np.ndarray] = []
        self._kept_ids: list[np.ndarray] = []
        self._run_ids: list[np.ndarray] = []
        self._run_counts: list[np.ndarray] = []

    def add(self, rows: TokenRows) -> None:
        """Token rows in which each request's rows are contiguous."""
        ids, t, tokens, choice = rows.request_id, rows.t_s, rows.tokens, rows.choice
        if ids.size == 0:
            return
        starts_mask = np.empty(ids.size, dtype=bool)
        starts_mask[0] = True
        np.not_equal(ids[1:], ids[:-1], out=starts_mask[1:])
        starts = np.flatnonzero(starts_mask)
        lengths = np.diff(starts, append=ids.size)
        within = ~starts_mask[1:]  # row i and i+1 belong to the same request
        dt = t[1:] - t[:-1]
        same_choice = choice[1:] == choice[:-1]
        # One choice per request, in time order (NaN times not): first and last are the ends.
        in_order = not (within & ~(same_choice & (dt >= 0))).any()
        if not in_order:
            # several choices interleaved, or events out of time order: order each request by (choice, t)
            order = np.lexsort((t, choice, np.cumsum(starts_mask)))
            t, tokens, choice = t[order], tokens[order], choice[order]
            dt = t[1:] - t[:-1]
            same_choice = choice[1:] == choice[:-1]
        seg_ids = ids[starts]
        self._seg_ids.append(seg_ids)
        if in_order:
            self._first.append(t[starts])
            self._last.append(t[starts + lengths - 1])
        else:
            self._first.append(np.minimum.reduceat(t, starts))
            self._last.append(np.maximum.reduceat(t, starts))
        self._tokens.append(_chunk_tokens(tokens, starts, lengths))
        kept = member(seg_ids, self.keep)
        if not kept.any():
            return
        self._kept_ids.append(seg_ids[kept])
        if in_order and kept.all():  # every gap within a request is kept
            gap_mask, counts = within, lengths - 1
        else:
            pair = np.zeros(ids.size, dtype=bool)  # pair[i + 1]: a gap between rows i and i + 1 is kept
            np.logical_and(within, same_choice, out=pair[1:])
            if not kept.all():
                pair[1:] &= np.repeat(kept, lengths)[1:]
            gap_mask, counts = pair[1:], np.add.reduceat(pair, starts, dtype=np.int64)
        runs = counts > 0
        self._run_ids.append(seg_ids[runs])
        self._run_counts.append(counts[runs])
        # Boolean indexing, not np.compress(out=...): 5x faster here (compress goes through indices).
        gaps = self._values.slot(int(counts.sum()))
        np.multiply(dt[gap_mask], 1e3, out=gaps)
        closing = t[1:][gap_mask] if self._times is not None or self._blocks is not None else None
        if self._times is not None:
            self._times.slot(gaps.size)[:] = closing  # the closing chunk's time
        if self._blocks is not None and self._block_s is not None and closing is not None:
            np.divide(closing, self._block_s, out=closing)
            self._add_blocks(np.floor(closing, out=closing))

    def _add_blocks(self, blocks: np.ndarray) -> None:
        assert self._blocks is not None
        if blocks.size and self._blocks.dtype != np.int32:
            limits = np.iinfo(self._blocks.dtype)
            if blocks.min() < limits.min or blocks.max() > limits.max:
                self._blocks = self._blocks.widened(self._rows, np.int32)
        self._blocks.slot(blocks.size)[:] = blocks

    def stats(self) -> pd.DataFrame:
        ids = concat(self._seg_ids, np.int64)
        frame = pd.DataFrame({"request_id": ids, "first_token_s": concat(self._first, np.float64),
                              "last_token_s": concat(self._last, np.float64),
                              "chunk_tokens": concat(self._tokens, np.int64)})
        if pd.Index(ids).is_unique:
            return frame.set_index("request_id")
        return frame.groupby("request_id").agg(first_token_s=("first_token_s", "min"),
                                               last_token_s=("last_token_s", "max"),
                                               chunk_tokens=("chunk_tokens", "sum"))

    def gaps(self) -> ItlGaps:
        times = self._times.array() if self._times is not None else None
        blocks = self._blocks.array() if self._blocks is not None else None
        return ItlGaps(self._values.array(), concat(self._run_ids, np.int64), concat(self._run_counts, np.int64),
                       times, blocks)

    def result(self) -> ScanResult | None:
        """None when a kept request's chunks were in more than one place: gaps across the
        places are missing, and must be computed again from its rows sorted together."""
        if not pd.Index(concat(self._kept_ids, np.int64)).is_unique:
            return None
        return ScanResult(self.stats(), self.gaps())


def _chunk_tokens(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per request (rows from `starts`, `lengths` each): the sum of its chunks' tokens, 1
    for a chunk whose count is unknown."""
    if not (tokens != NO_TOKENS).any():
        return lengths.astype(np.int64, copy=False)
    counted = np.where(tokens == NO_TOKENS, 1, tokens)
    return np.add.reduceat(counted, starts, dtype=np.int64)


def member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """values in sorted_set (sorted unique), by binary search: np.isin would sort the set
    again for every batch."""
    if sorted_set.size == 0:
        return np.zeros(values.size, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    return sorted_set[at] == values


def concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
