"""scan.Scan(block_dtype=int16): the same blocks as int32, in half the bytes while they fit,
and widened to int32 (values unchanged) by the first batch whose blocks do not."""

from __future__ import annotations

import numpy as np
import pytest

from bench.metrics import scan
from bench.records import KIND_CONTENT, ChunkBatch

BLOCK_S = 0.25


def _batch(first_id: int, starts: np.ndarray, chunks: int = 5) -> ChunkBatch:
    """One request per start, `chunks` content chunks 0.1 s apart from it."""
    ids = np.repeat(np.arange(first_id, first_id + starts.size, dtype=np.int64), chunks)
    t = (starts[:, None] + 0.1 * np.arange(chunks)[None, :]).ravel()
    return ChunkBatch(ids, t, np.full(ids.size, KIND_CONTENT, np.int8), np.full(ids.size, -1, np.int32),
                      np.zeros(ids.size, np.int32))


def _blocks(batches: list[ChunkBatch], dtype: type) -> np.ndarray:
    keep = np.concatenate([b.request_id for b in batches])
    one = scan.Scan(keep, sum(b.request_id.size for b in batches), block_s=BLOCK_S, block_dtype=dtype)
    scan.read_once(batches, [one])
    blocks = one.result(lambda: batches).gaps.blocks
    assert blocks is not None
    return blocks


def _expected(batches: list[ChunkBatch]) -> np.ndarray:
    """floor(closing chunk time / block_s) of every gap, the plain way."""
    out = []
    for b in batches:
        for rid in np.unique(b.request_id):
            t = b.t_s[b.request_id == rid]
            out.extend(np.floor(t[1:] / BLOCK_S).astype(np.int64))
    return np.asarray(out)


def test_int16_blocks_that_fit_stay_int16_with_the_int32_values():
    batches = [_batch(0, np.array([0.0, 3.3, 100.0])), _batch(3, np.array([8000.0]))]  # block 32,001 at most
    small = _blocks(batches, np.int16)
    assert small.dtype == np.int16
    assert np.array_equal(small, _blocks(batches, np.int32))
    assert np.array_equal(small, _expected(batches)) and small.max() > 32_000


@pytest.mark.parametrize("late", [9000.0, -9000.0])  # block 36,000 / -36,000: past int16 either way
def test_a_block_past_int16_widens_every_block_to_int32_unchanged(late):
    batches = [_batch(0, np.array([0.0, 50.0])), _batch(2, np.array([late, 1.0]))]
    wide = _blocks(batches, np.int16)
    assert wide.dtype == np.int32
    assert np.array_equal(wide, _expected(batches))
    assert wide.size == 4 * 4 and abs(int(wide[8:12].min())) >= 36_000
