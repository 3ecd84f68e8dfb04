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
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd

from bench.metric_catalogue import ITL
from bench.records import CHUNK_KINDS, NO_TOKENS, OUTPUT_KINDS, ChunkBatch
from bench.store import frame_batch

__all__ = ["TOKEN_KINDS", "Consumer", "ItlGaps", "Scan", "ScanResult", "TokenRate", "kinds_present", "read_once", "scan",
           "scan_frame", "token_rate"]

TOKEN_KINDS = OUTPUT_KINDS  # every generated delta counts: text, reasoning, tool calls, refusals
_IS_TOKEN = np.zeros(256, dtype=bool)
_IS_TOKEN[[CHUNK_KINDS.index(k) for k in TOKEN_KINDS]] = True


@dataclass
class ItlGaps:
    """ITL gaps (ms) of some requests: each request's gaps are one contiguous run, in the
    order its chunks were stored (a request's choices one after another, each in time order)."""

    values: np.ndarray | None  # float64; None once consumed by `take(..., consume=True)`
    request_ids: np.ndarray  # int64, the request of each run
    counts: np.ndarray  # int64, gaps in each run
    times: np.ndarray | None = None  # float64, each gap's closing chunk time, when asked for

    def frame(self) -> pd.DataFrame:
        """The gaps as a frame (`request_id`, `t_s` of the gap's closing chunk, `itl_ms`),
        each request's in stored order. Needs `times` (scan with times=True)."""
        if self.values is None or self.times is None:
            raise ValueError("a gap frame needs the gaps and their times: scan(..., times=True)")
        run_ids = self.request_ids
        if run_ids.size == 0 or run_ids.max() <= np.iinfo(np.int32).max:
            run_ids = run_ids.astype(np.int32)  # as read_chunks stores them, before the 125M-row repeat
        ids = np.repeat(run_ids, self.counts)
        return pd.DataFrame({"request_id": ids,
                             "t_s": self.times, ITL.key: self.values}, copy=False)

    def take(self, request_ids: Iterable[int] | np.ndarray, consume: bool = False, share: bool = False) -> np.ndarray:
        """The gaps of the given requests, as an array the caller owns.

        `consume=True` hands over `values` itself when every request is selected (no 1 GB
        copy at 125M gaps) and leaves this object empty: for the last use only.
        `share=True` returns `values` itself when every request is selected, and keeps it:
        the caller only reads it.
        """
        if self.values is None:
            raise ValueError("these ITL gaps were consumed by an earlier take(consume=True)")
        selected = np.isin(self.request_ids, np.asarray(request_ids, dtype=np.int64))
        if (consume or share) and selected.all():
            values = self.values
            if consume:
                self.values = None
            return values
        return self.values[np.repeat(selected, self.counts)]


@dataclass(frozen=True)
class ScanResult:
    stats: pd.DataFrame  # index request_id: first_token_s, last_token_s, chunk_tokens
    gaps: ItlGaps  # of the kept requests only


class Scan:
    """One scan's state, fed the batches one by one (`scan` drives one; `read_once` feeds
    several from one read of the chunks). Arguments as `scan`'s."""

    def __init__(self, keep: Iterable[int] | np.ndarray, rows: int | None = None, times: bool = False,
                 kinds: Iterable[str] | None = None) -> None:
        self._mask = _kind_mask(kinds)
        self._times = times
        self._scanner = _Scanner(_sorted_unique(np.asarray(keep, dtype=np.int64)), rows, times)
        self._carry: _TokenRows | None = None  # the last request of the previous batch, which may go on
        self._result: ScanResult | None = None

    def feed(self, batch: ChunkBatch) -> None:
        tok = _token_rows(batch, self._mask)
        carry = self._carry
        if carry is not None:
            ids = tok.request_id
            other = np.flatnonzero(ids != carry.request_id[0])
            goes_on = int(other[0]) if other.size else ids.size
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
        other = np.flatnonzero(ids != ids[-1])
        cut = int(other[-1]) + 1 if other.size else 0
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
            fallback = _Scanner(self._scanner.keep, None, self._times)
            fallback.add(sorted_rows)
            result = ScanResult(self._scanner.stats(), fallback.gaps())
        self._result = result
        return result


def scan(batches: Callable[[], Iterable[ChunkBatch]], keep: Iterable[int] | np.ndarray,
         rows: int | None = None, times: bool = False, kinds: Iterable[str] | None = None) -> ScanResult:
    """Token statistics of every request and the ITL gaps of the `keep` requests.

    `batches` returns a fresh iterator each call (a second pass is needed only for a file
    whose requests are not each in one place); `rows`, when known, bounds the number of
    gaps so their buffer is allocated once. `times`: keep each gap's time too (8 more
    bytes a gap), for `ItlGaps.frame`. `kinds`: the chunk kinds (`records.CHUNK_KINDS`
    names) that count as tokens, TOKEN_KINDS unless given: other tools' definitions
    (`bench.metrics.dialects`) count other kinds.
    """
    one = Scan(keep, rows, times, kinds)
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


def kinds_present(batch: ChunkBatch) -> frozenset[str]:
    """The chunk kinds (`records.CHUNK_KINDS` names) the batch holds."""
    counts = np.bincount(batch.kind.view(np.uint8), minlength=len(CHUNK_KINDS))
    return frozenset(CHUNK_KINDS[i] for i in np.flatnonzero(counts[:len(CHUNK_KINDS)]))


def scan_frame(chunks: pd.DataFrame, keep: Iterable[int] | np.ndarray, times: bool = False,
               kinds: Iterable[str] | None = None) -> ScanResult:
    """`scan` of a chunk frame held in memory."""
    batch = frame_batch(chunks)
    return scan(lambda: [batch], keep, times=times, kinds=kinds)


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
    """float64 values appended batch by batch: into one array allocated up front when the
    total is bounded (the untouched rest is never paged in), else into parts."""

    def __init__(self, bound: int | None) -> None:
        self._array = np.empty(bound, dtype=np.float64) if bound is not None else None
        self._parts: list[np.ndarray] = []
        self.filled = 0

    def add(self, values: np.ndarray) -> None:
        if self._array is None:
            self._parts.append(values)
        else:
            self._array[self.filled:self.filled + values.size] = values
        self.filled += values.size

    def array(self) -> np.ndarray:
        return _cat(self._parts, np.float64) if self._array is None else self._array[:self.filled]


class _Scanner:
    def __init__(self, keep: np.ndarray, rows: int | None, times: bool = False) -> None:
        self.keep = keep  # sorted unique request ids whose gaps are kept
        self._values = _Buffer(rows)
        self._times = _Buffer(rows) if times else None
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
        lengths = np.diff(np.append(starts, ids.size))
        pair = np.zeros(ids.size, dtype=bool)  # pair[i + 1]: a gap between rows i and i + 1 is kept
        pair[1:] = within & same_choice & np.repeat(kept, lengths)[1:]
        counts = np.add.reduceat(pair, starts, dtype=np.int64)
        gaps = dt[pair[1:]] * 1e3
        runs = counts > 0
        self._run_ids.append(seg_ids[runs])
        self._run_counts.append(counts[runs])
        self._values.add(gaps)
        if self._times is not None:
            self._times.add(t[1:][pair[1:]])  # the closing chunk's time

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
        return ItlGaps(self._values.array(), _cat(self._run_ids, np.int64), _cat(self._run_counts, np.int64),
                       times)

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


def _token_rows(batch: ChunkBatch, is_token: np.ndarray) -> _TokenRows:
    mask = is_token[batch.kind.view(np.uint8)]
    return _TokenRows(batch.request_id[mask], batch.t_s[mask], batch.tokens[mask], batch.choice[mask])


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
