"""Each metric's one definition: one pass over a run's stored chunks, batch by batch.

First token, last token, output tokens counted from chunks, ITL gaps and the token rate
over time are defined here, over stored chunk batches (`store.ChunkBatch`), and nowhere
else: `bench.metrics.derive` turns the per-request token statistics into TTFT, E2E, TPOT;
the summary, the sweep, `Run.itl` and `Run.token_rate` all come from here, whether the
chunks are on disk or in a frame (`scan_frame`). The frame forms in tests/unit/metrics/
oracle.py, written the plain pandas way, are the tests' independent check of these.

- first token: the first chunk of an output kind (TOKEN_KINDS: content, reasoning, tool
  call, legacy function_call, refusal); a role-only chunk never counts. Last token: the
  last such chunk (the usage chunk and [DONE] excluded).
- chunk tokens: the sum over token chunks of their token count, 1 when unknown.
- ITL: every gap between consecutive token chunks of one (request, choice), in time order.

At 1M requests x 128 chunks the chunk frame is 128M rows (2.4 GB in compact types, more
while it is built), and every selection of it another copy. What the summary needs is
much less: per request the first and last token time and the token count, and the ITL
gaps of the requests it counts (8 bytes per gap). `scan` computes exactly those.

Stored batches hold whole records in order (`records.ChunkBatch`); a record cut by a batch
boundary is carried into the next batch. A file in any other layout (one request's
events in separate places) still gives the same numbers, through a slower path that
sorts every kept token chunk at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

import numpy as np
import pandas as pd

from bench.metrics.gaps import ItlGaps
from bench.records import CHUNK_KINDS, NO_TOKENS, OUTPUT_KINDS, ChunkBatch
from bench.store import frame_batch

__all__ = ["TOKEN_KINDS", "Consumer", "ItlGaps", "Scan", "ScanResult", "TokenRate", "kinds_present", "read_once", "scan",
           "scan_frame", "token_rate"]

TOKEN_KINDS = OUTPUT_KINDS  # every generated delta counts: text, reasoning, tool calls, refusals
_IS_TOKEN = np.zeros(256, dtype=bool)
_IS_TOKEN[[CHUNK_KINDS.index(k) for k in TOKEN_KINDS]] = True


@dataclass(frozen=True)
class ScanResult:
    stats: pd.DataFrame  # index request_id: first_token_s, last_token_s, chunk_tokens
    gaps: ItlGaps  # of the kept requests only


class Scan:
    """One scan's state, fed the batches one by one (`scan` drives one; `read_once` feeds
    several from one read of the chunks). Arguments as `scan`'s."""

    def __init__(self, keep: Iterable[int] | np.ndarray, rows: int | None = None, times: bool = False,
                 kinds: Iterable[str] | None = None, block_s: float | None = None) -> None:
        self._mask = _kind_mask(kinds)
        self._times = times
        self._block_s = block_s
        self._scanner = _Scanner(_sorted_unique(np.asarray(keep, dtype=np.int64)), rows, times, block_s)
        self._carry: _TokenRows | None = None  # the last request of the previous batch, which may go on
        self._result: ScanResult | None = None

    def feed(self, batch: ChunkBatch) -> None:
        tok = _token_rows(batch, self._mask)
        carry = self._carry
        if carry is not None:
            ids = tok.request_id
            other = ids != carry.request_id[0]
            goes_on = int(other.argmax()) if other.any() else ids.size  # the first row of another request
            if goes_on:
                carry = _TokenRows(*(np.concatenate(pair) for pair in zip(carry, _rows(tok, 0, goes_on), strict=True)))
                tok = _rows(tok, goes_on, ids.size)
            if tok.request_id.size == 0:
                self._carry = carry
                return
            self._scanner.add(carry)
        ids = tok.request_id
        if ids.size == 0:
            self._carry = None
            return
        other = ids[::-1] != ids[-1]
        cut = ids.size - int(other.argmax()) if other.any() else 0  # after the last row of another request
        self._scanner.add(_rows(tok, 0, cut))
        self._carry = _rows(tok, cut, ids.size)

    def result(self, batches: Callable[[], Iterable[ChunkBatch]]) -> ScanResult:
        """The scan of every batch fed; `batches` is read again only when some request's
        chunks were in more than one place. The same result when asked again."""
        if self._result is not None:
            return self._result
        if self._carry is not None:
            self._scanner.add(self._carry)
            self._carry = None
        result = self._scanner.result()
        if result is None:  # some request's chunks are in more than one place
            sorted_rows = _sorted_token_rows(batches(), self._scanner.keep, self._mask)
            fallback = _Scanner(self._scanner.keep, None, self._times, self._block_s)
            fallback.add(sorted_rows)
            result = ScanResult(self._scanner.stats(), fallback.gaps())
        self._result = result
        return result


def scan(batches: Callable[[], Iterable[ChunkBatch]], keep: Iterable[int] | np.ndarray,
         rows: int | None = None, times: bool = False, kinds: Iterable[str] | None = None,
         block_s: float | None = None) -> ScanResult:
    """Token statistics of every request and the ITL gaps of the `keep` requests.

    `batches` returns a fresh iterator each call (a second pass is needed only for a file
    whose requests are not each in one place); `rows`, when known, bounds the number of
    gaps so their buffer is allocated once. `times`: keep each gap's time too (8 more
    bytes a gap), for `ItlGaps.frame`. `kinds`: the chunk kinds (`records.CHUNK_KINDS`
    names) that count as tokens, TOKEN_KINDS unless given: other tools' definitions
    (`bench.metrics.dialects`) count other kinds. `block_s`: keep each gap's block of run
    time instead, floor(time / block_s) as int32 (4 bytes a gap; `ItlGaps.blocks`).
    """
    one = Scan(keep, rows, times, kinds, block_s)
    read_once(batches(), [one])
    return one.result(batches)


class Consumer(Protocol):
    def feed(self, batch: ChunkBatch) -> None: ...


def read_once(batches: Iterable[ChunkBatch], consumers: Sequence[Consumer]) -> None:
    """Feed every batch to every consumer (`Scan`, `TokenRate`): one read of the chunks
    for all of them (a read of 128M stored chunks takes seconds)."""
    for batch in batches:
        for consumer in consumers:
            consumer.feed(batch)
    _LastBatch.batch, _LastBatch.rows = None, {}  # the last batch's rows are not kept after the read


def kinds_present(batch: ChunkBatch) -> frozenset[str]:
    """The chunk kinds (`records.CHUNK_KINDS` names) the batch holds."""
    seen = np.zeros(256, dtype=bool)
    seen[batch.kind.view(np.uint8)] = True
    return frozenset(CHUNK_KINDS[i] for i in np.flatnonzero(seen[:len(CHUNK_KINDS)]))


def scan_frame(chunks: pd.DataFrame, keep: Iterable[int] | np.ndarray, times: bool = False,
               kinds: Iterable[str] | None = None, block_s: float | None = None) -> ScanResult:
    """`scan` of a chunk frame held in memory."""
    batch = frame_batch(chunks)
    return scan(lambda: [batch], keep, times=times, kinds=kinds, block_s=block_s)


def token_rate(batches: Iterable[ChunkBatch], bin_s: float = 1.0) -> pd.DataFrame:
    """Output tokens per second in consecutive `bin_s` bins from t=0: `t_s` (bin start),
    `tokens_per_s`, over stored chunk batches (`[store.frame_batch(chunks)]` for a frame).

    A chunk counts its `tokens` when the server said, else 1. The last bin is divided by
    the time it covers up to the last token, not by `bin_s`: a run ending just after a bin
    boundary would otherwise show a collapse of throughput that never was.
    """
    rate = TokenRate(bin_s)
    read_once(batches, [rate])
    return rate.frame()


class TokenRate:
    """`token_rate` fed batch by batch (`read_once`)."""

    def __init__(self, bin_s: float) -> None:
        if bin_s <= 0:
            raise ValueError("bin_s must be positive")
        self.bin_s = bin_s
        self._sums = np.zeros(0, dtype=np.float64)
        self._last = 0.0

    def feed(self, batch: ChunkBatch) -> None:
        rows = _token_rows(batch, _IS_TOKEN)
        if rows.t_s.size == 0:
            return
        counted = np.where(rows.tokens == NO_TOKENS, 1, rows.tokens)  # unknown: one token
        bins = np.floor(np.clip(rows.t_s, 0.0, None) / self.bin_s).astype("int64")
        part = np.bincount(bins, weights=np.asarray(counted, dtype="float64")).astype(np.float64, copy=False)
        if part.size > self._sums.size:  # bins of separate batches add up, the shorter padded with zeros
            part[:self._sums.size] += self._sums
            self._sums = part
        else:
            self._sums[:part.size] += part
        self._last = max(self._last, float(rows.t_s.max()))

    def frame(self) -> pd.DataFrame:
        sums, bin_s = self._sums, self.bin_s
        if sums.size == 0:
            return pd.DataFrame({"t_s": np.empty(0), "tokens_per_s": np.empty(0)})
        spans = np.full(sums.size, bin_s)
        spans[-1] = max(self._last - (sums.size - 1) * bin_s, 1e-3 * bin_s)
        return pd.DataFrame({"t_s": np.arange(sums.size) * bin_s, "tokens_per_s": sums / spans})


class _Buffer:
    """Values appended batch by batch (float64 unless told): into one array allocated up front
    when the total is bounded (the untouched rest is never paged in), else into parts."""

    def __init__(self, bound: int | None, dtype: type = np.float64) -> None:
        self._dtype = dtype
        self._array: np.ndarray | None = np.empty(bound, dtype=dtype) if bound is not None else None
        self._parts: list[np.ndarray] = []
        self.filled = 0

    def slot(self, size: int) -> np.ndarray:
        """The next `size` places, to be written by the caller."""
        if self._array is None:
            self._parts.append(np.empty(size, dtype=self._dtype))
            out = self._parts[-1]
        else:
            out = self._array[self.filled:self.filled + size]
        self.filled += size
        return out

    def array(self) -> np.ndarray:
        return _cat(self._parts, self._dtype) if self._array is None else self._array[:self.filled]


class _Scanner:
    def __init__(self, keep: np.ndarray, rows: int | None, times: bool = False, block_s: float | None = None) -> None:
        self.keep = keep  # sorted unique request ids whose gaps are kept
        self._values = _Buffer(rows)
        self._times = _Buffer(rows) if times else None
        self._block_s = block_s
        self._blocks = _Buffer(rows, np.int32) if block_s is not None else None
        self._seg_ids: list[np.ndarray] = []
        self._first: list[np.ndarray] = []
        self._last: list[np.ndarray] = []
        self._tokens: list[np.ndarray] = []
        self._kept_ids: list[np.ndarray] = []
        self._run_ids: list[np.ndarray] = []
        self._run_counts: list[np.ndarray] = []

    def add(self, rows: _TokenRows) -> None:
        """Token rows in which each request's rows are contiguous."""
        ids, t, tokens, choice = rows.request_id, rows.t_s, rows.tokens, rows.choice
        if ids.size == 0:
            return
        starts_mask = np.empty(ids.size, dtype=bool)
        starts_mask[0] = True
        np.not_equal(ids[1:], ids[:-1], out=starts_mask[1:])
        starts = np.flatnonzero(starts_mask)
        within = ~starts_mask[1:]  # row i and i+1 belong to the same request
        dt = t[1:] - t[:-1]
        same_choice = choice[1:] == choice[:-1]
        if (within & (~same_choice | (dt < 0))).any():
            # several choices interleaved, or events out of time order: order each request by (choice, t)
            order = np.lexsort((t, choice, np.cumsum(starts_mask)))
            t, tokens, choice = t[order], tokens[order], choice[order]
            dt = t[1:] - t[:-1]
            same_choice = choice[1:] == choice[:-1]
        seg_ids = ids[starts]
        self._seg_ids.append(seg_ids)
        self._first.append(np.minimum.reduceat(t, starts))
        self._last.append(np.maximum.reduceat(t, starts))
        counted = np.where(tokens == NO_TOKENS, 1, tokens)  # unknown: one token
        self._tokens.append(np.add.reduceat(counted, starts, dtype=np.int64))
        kept = _member(seg_ids, self.keep)
        if not kept.any():
            return
        self._kept_ids.append(seg_ids[kept])
        pair = np.zeros(ids.size, dtype=bool)  # pair[i + 1]: a gap between rows i and i + 1 is kept
        np.logical_and(within, same_choice, out=pair[1:])
        if not kept.all():
            pair[1:] &= np.repeat(kept, np.diff(np.append(starts, ids.size)))[1:]
        counts = np.add.reduceat(pair, starts, dtype=np.int64)
        runs = counts > 0
        self._run_ids.append(seg_ids[runs])
        self._run_counts.append(counts[runs])
        gaps = self._values.slot(int(counts.sum()))
        np.compress(pair[1:], dt, out=gaps)
        gaps *= 1e3
        if self._times is not None:
            np.compress(pair[1:], t[1:], out=self._times.slot(gaps.size))  # the closing chunk's time
        if self._blocks is not None and self._block_s is not None:
            self._blocks.slot(gaps.size)[:] = np.floor(t[1:][pair[1:]] / self._block_s)

    def stats(self) -> pd.DataFrame:
        ids = _cat(self._seg_ids, np.int64)
        frame = pd.DataFrame({"request_id": ids, "first_token_s": _cat(self._first, np.float64),
                              "last_token_s": _cat(self._last, np.float64),
                              "chunk_tokens": _cat(self._tokens, np.int64)})
        if pd.Index(ids).is_unique:
            return frame.set_index("request_id")
        return frame.groupby("request_id").agg(first_token_s=("first_token_s", "min"),
                                               last_token_s=("last_token_s", "max"),
                                               chunk_tokens=("chunk_tokens", "sum"))

    def gaps(self) -> ItlGaps:
        times = self._times.array() if self._times is not None else None
        blocks = self._blocks.array() if self._blocks is not None else None
        return ItlGaps(self._values.array(), _cat(self._run_ids, np.int64), _cat(self._run_counts, np.int64),
                       times, blocks)

    def result(self) -> ScanResult | None:
        """None when a kept request's chunks were in more than one place: gaps across the
        places are missing, and must be computed again from its rows sorted together."""
        if not pd.Index(_cat(self._kept_ids, np.int64)).is_unique:
            return None
        return ScanResult(self.stats(), self.gaps())


class _TokenRows(NamedTuple):
    """The token-carrying rows of a batch (content and reasoning chunks)."""

    request_id: np.ndarray
    t_s: np.ndarray
    tokens: np.ndarray
    choice: np.ndarray


def _kind_mask(kinds: Iterable[str] | None) -> np.ndarray:
    """A lookup table by kind code: True for the kinds that count (ValueError for an unknown name)."""
    if kinds is None:
        return _IS_TOKEN
    mask = np.zeros(256, dtype=bool)
    for name in kinds:
        if name not in CHUNK_KINDS:
            raise ValueError(f"not a chunk kind: {name!r} (one of {', '.join(CHUNK_KINDS)})")
        mask[CHUNK_KINDS.index(name)] = True
    return mask


class _LastBatch:
    """The token rows of the last batch seen, by kind mask: the consumers of one read
    (`read_once`) that count the same kinds select them once. Holds one batch's rows at most."""

    batch: ClassVar[ChunkBatch | None] = None
    rows: ClassVar[dict[bytes, _TokenRows]] = {}


def _token_rows(batch: ChunkBatch, is_token: np.ndarray) -> _TokenRows:
    if _LastBatch.batch is not batch:
        _LastBatch.batch, _LastBatch.rows = batch, {}
    key = is_token.tobytes()
    rows = _LastBatch.rows.get(key)
    if rows is None:
        mask = is_token[batch.kind.view(np.uint8)]
        if mask.all():  # every chunk counts (e.g. every kind): the batch's own columns, not copies
            rows = _TokenRows(batch.request_id, batch.t_s, batch.tokens, batch.choice)
        else:
            rows = _TokenRows(batch.request_id[mask], batch.t_s[mask], batch.tokens[mask], batch.choice[mask])
        _LastBatch.rows[key] = rows
    return rows


def _rows(rows: _TokenRows, start: int, stop: int) -> _TokenRows:
    return _TokenRows(*(col[start:stop] for col in rows))


def _sorted_token_rows(batches: Iterable[ChunkBatch], keep: np.ndarray, is_token: np.ndarray) -> _TokenRows:
    """Every kept token row, sorted by (request, choice, time): the layout `add` needs."""
    parts = []
    for batch in batches:
        rows = _token_rows(batch, is_token)
        parts.append(_TokenRows(*(col[_member(rows.request_id, keep)] for col in rows)))
    if not parts:
        return _TokenRows(*(np.empty(0, dtype) for dtype in (np.int64, np.float64, np.int32, np.int32)))
    rows = _TokenRows(*(np.concatenate(cols) for cols in zip(*parts, strict=True)))
    order = np.lexsort((rows.t_s, rows.choice, rows.request_id))
    return _TokenRows(*(col[order] for col in rows))


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    if values.size < 2 or (values[1:] > values[:-1]).all():
        return values  # request ids usually come sorted: np.unique took 0.6 s for 1M
    return np.unique(values)


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """values in sorted_set (sorted unique), by binary search: np.isin would sort the set
    again for every batch."""
    if sorted_set.size == 0:
        return np.zeros(values.size, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    return sorted_set[at] == values


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
