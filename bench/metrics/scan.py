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
from typing import ClassVar, Protocol

import numpy as np
import pandas as pd

from bench.metrics.gaps import ItlGaps
from bench.metrics.scan_rows import RowScanner, ScanResult, TokenRows, member
from bench.records import CHUNK_KINDS, NO_TOKENS, OUTPUT_KIND_TABLE, OUTPUT_KINDS, ChunkBatch
from bench.store import frame_batch

__all__ = ["TOKEN_KINDS", "Consumer", "ItlGaps", "Scan", "ScanResult", "TokenRate", "kinds_present", "read_once", "scan",
           "scan_frame", "token_rate"]

TOKEN_KINDS = OUTPUT_KINDS  # every generated delta counts: text, reasoning, tool calls, refusals
_IS_TOKEN = OUTPUT_KIND_TABLE  # by kind code: a TOKEN_KIND


class Scan:
    """One scan's state, fed the batches one by one (`scan` drives one; `read_once` feeds
    several from one read of the chunks). Arguments as `scan`'s."""

    def __init__(self, keep: Iterable[int] | np.ndarray, rows: int | None = None, times: bool = False,
                 kinds: Iterable[str] | None = None, block_s: float | None = None,
                 block_dtype: type = np.int32) -> None:
        self._mask = _kind_mask(kinds)
        self._times = times
        self._block_s = block_s
        self._scanner = RowScanner(_sorted_unique(np.asarray(keep, dtype=np.int64)), rows, times, block_s, block_dtype)
        self._carry: TokenRows | None = None  # the last request of the previous batch, which may go on
        self._result: ScanResult | None = None

    def feed(self, batch: ChunkBatch) -> None:
        tok = _token_rows(batch, self._mask)
        carry = self._carry
        if carry is not None:
            ids = tok.request_id
            other = ids != carry.request_id[0]
            goes_on = int(other.argmax()) if other.any() else ids.size  # the first row of another request
            if goes_on:
                carry = TokenRows(*(np.concatenate(pair) for pair in zip(carry, _rows(tok, 0, goes_on), strict=True)))
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
            fallback = RowScanner(self._scanner.keep, None, self._times, self._block_s)
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
    `Scan` also takes `block_dtype`: int16 halves that when the blocks are known to be
    small (a block outside its range turns the blocks into int32, the values unchanged).
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
        self._sums: np.ndarray = np.zeros(0, dtype=np.float64)
        self._last = 0.0

    def feed(self, batch: ChunkBatch) -> None:
        rows = _token_rows(batch, _IS_TOKEN)
        if rows.t_s.size == 0:
            return
        scaled = rows.t_s / self.bin_s
        if scaled.min() < 0:
            np.maximum(scaled, 0.0, out=scaled)  # a token before t=0 counts in the first bin
        bins = scaled.astype(np.int64)  # (floor: every value is >= 0)
        known = rows.tokens != NO_TOKENS
        part: np.ndarray
        if known.any():
            counted = np.where(known, rows.tokens, 1)  # unknown: one token
            part = np.bincount(bins, weights=counted.astype(np.float64))
        else:
            part = np.bincount(bins).astype(np.float64)
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
    rows: ClassVar[dict[bytes, TokenRows]] = {}


def _token_rows(batch: ChunkBatch, is_token: np.ndarray) -> TokenRows:
    if _LastBatch.batch is not batch:
        _LastBatch.batch, _LastBatch.rows = batch, {}
    key = is_token.tobytes()
    rows = _LastBatch.rows.get(key)
    if rows is None:
        codes = batch.kind.view(np.uint8)
        if _every_kind(is_token) and (codes.size == 0 or int(codes.max()) < len(CHUNK_KINDS)):
            mask = None  # every chunk counts: the batch's own columns, not copies (and no lookup)
        else:
            mask = is_token.take(codes)  # (take: a third faster than indexing, 3 ms at 1M rows)
        if mask is None or mask.all():
            rows = TokenRows(batch.request_id, batch.t_s, batch.tokens, batch.choice)
        else:
            rows = TokenRows(batch.request_id[mask], batch.t_s[mask], batch.tokens[mask], batch.choice[mask])
        _LastBatch.rows[key] = rows
    return rows


def _every_kind(is_token: np.ndarray) -> bool:
    """Whether the kind table counts every stored kind."""
    return bool(is_token[:len(CHUNK_KINDS)].all())


def _rows(rows: TokenRows, start: int, stop: int) -> TokenRows:
    return TokenRows(*(col[start:stop] for col in rows))


def _sorted_token_rows(batches: Iterable[ChunkBatch], keep: np.ndarray, is_token: np.ndarray) -> TokenRows:
    """Every kept token row, sorted by (request, choice, time): the layout `add` needs."""
    parts = []
    for batch in batches:
        rows = _token_rows(batch, is_token)
        parts.append(TokenRows(*(col[member(rows.request_id, keep)] for col in rows)))
    if not parts:
        return TokenRows(*(np.empty(0, dtype) for dtype in (np.int64, np.float64, np.int32, np.int32)))
    rows = TokenRows(*(np.concatenate(cols) for cols in zip(*parts, strict=True)))
    order = np.lexsort((rows.t_s, rows.choice, rows.request_id))
    return TokenRows(*(col[order] for col in rows))


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    if values.size < 2 or (values[1:] > values[:-1]).all():
        return values  # request ids usually come sorted: np.unique took 0.6 s for 1M
    return np.unique(values)
