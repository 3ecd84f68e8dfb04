"""bench.analysis.derived: the figures finalize stores read back exactly, and nothing is
read from files that are cut short, of another version or of other dialect definitions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.analysis import derived
from bench.metrics.dialects import DIALECTS, DialectFigures
from bench.metrics.distribution import distribution
from bench.metrics.gaps import ItlGaps
from bench.metrics.scan import token_rate
from bench.records import KIND_CONTENT, ChunkBatch


def _store(tmp_path, blocks: np.ndarray):
    rng = np.random.default_rng(2)
    values = rng.exponential(20.0, blocks.size)
    gaps = ItlGaps(values, np.arange(4, dtype=np.int64), np.full(4, blocks.size // 4, dtype=np.int64), None, blocks)
    times = np.sort(rng.uniform(0.0, 9.5, 50))
    batch = ChunkBatch(np.zeros(50, np.int64), times, np.full(50, KIND_CONTENT, np.int8), np.full(50, -1, np.int32),
                       np.zeros(50, np.int32))
    rates = [(1.0, token_rate([batch], 1.0)), (0.37, token_rate([batch], 0.37))]
    assert all(len(frame) > 5 for _, frame in rates)
    figures = [DialectFigures(d, distribution(values[:10]), distribution(values), None, distribution(values[10:20]),
                              123.5, 7) for d in DIALECTS]
    derived.write_gaps(tmp_path, gaps)
    derived.write_derived(tmp_path, values.size, 0.25, rates, figures)
    return values, rates, figures


@pytest.mark.parametrize("top", [100, 40_000])  # int16 blocks, then int32
def test_what_finalize_stores_is_read_back_exactly(tmp_path, top):
    blocks = np.linspace(0, top, 400).astype(np.int32)
    values, rates, figures = _store(tmp_path, blocks)
    back = derived.read_derived(tmp_path)
    assert back is not None and back.itl_count == values.size
    assert np.array_equal(back.itl_values(), values)
    stored_blocks = back.itl_blocks(0.25)
    assert np.array_equal(stored_blocks, blocks) and stored_blocks.dtype == (np.int16 if top < 32768 else np.int32)
    assert back.itl_blocks(0.5) is None  # other blocks: computed again
    for bin_s, frame in rates:
        pd.testing.assert_frame_equal(back.token_rates[bin_s], frame, check_exact=True)
    assert back.dialects == figures


def test_files_cut_short_or_of_another_version_or_definition_are_ignored(tmp_path):
    _store(tmp_path, np.zeros(400, np.int32))
    path = tmp_path / derived.ITL_VALUES
    path.write_bytes(path.read_bytes()[:-8])
    assert derived.read_derived(tmp_path).itl_values() is None
    data = json.loads((tmp_path / derived.DERIVED).read_text())
    (tmp_path / derived.DERIVED).write_text(json.dumps({**data, "dialects_key": "other"}))
    assert derived.read_derived(tmp_path).dialects is None
    (tmp_path / derived.DERIVED).write_text(json.dumps({**data, "version": derived.VERSION + 1}))
    assert derived.read_derived(tmp_path) is None
    (tmp_path / derived.DERIVED).unlink()
    assert derived.read_derived(tmp_path) is None


@pytest.mark.parametrize(("blocks", "stored"), [
    (np.arange(400, dtype=np.int16), np.int16),  # already int16 (finalize's scan): stored as they are
    (np.arange(-200, 200, dtype=np.int16), np.int32),  # a block before t=0: int32, as from an int32 scan
    (np.arange(400, dtype=np.int64) * 100, np.int32),
])
def test_stored_blocks_are_int16_exactly_when_every_block_is_in_0_to_32767(tmp_path, blocks, stored):
    _store(tmp_path, blocks)
    back = derived.read_derived(tmp_path).itl_blocks(0.25)
    assert back.dtype == stored and np.array_equal(back, blocks)
