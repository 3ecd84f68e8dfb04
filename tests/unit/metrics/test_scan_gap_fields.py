"""What a scan's ITL gaps carry besides the values: blocks and times only when asked for,
blocks as int32 in every path (preallocated, in parts, the two-place fallback), runs only for
requests with gaps, and one result however often it is asked for.

Written against mutants of bench/metrics/scan.py that survived the 2026-11-30 run
(benchmarks/mutation.py); the survivors that cannot change any result are listed with their
reason in docs/mutation.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.metrics import scan
from bench.store import frame_batch


def frame(rows: list[tuple[int, float]]) -> pd.DataFrame:
    """Content chunks (request_id, t_s) of choice 0, token counts unknown."""
    return pd.DataFrame({"request_id": [r for r, _ in rows], "t_s": [t for _, t in rows],
                         "kind": "content", "tokens": np.nan, "choice": 0})


# request 1: gaps closing at 1.5 s and 2.5 s (blocks 1 and 2 of 1 s); request 2: one chunk, no gap
STORED = frame([(1, 0.5), (1, 1.5), (1, 2.5), (2, 0.7)])
# request 1's chunks in two places: the fallback path
SPLIT = frame([(1, 0.5), (1, 1.5), (2, 0.7), (1, 2.5)])


def test_scan_frame_keeps_each_gaps_block_when_asked():
    gaps = scan.scan_frame(STORED, [1, 2], block_s=1.0).gaps
    assert gaps.blocks is not None
    assert gaps.blocks.tolist() == [1, 2]
    assert gaps.blocks.dtype == np.int32


def test_blocks_and_times_only_when_asked_for():
    gaps = scan.scan_frame(STORED, [1, 2]).gaps
    assert gaps.blocks is None
    assert gaps.times is None
    batch = frame_batch(STORED)
    one = scan.Scan([1, 2])  # the defaults: no times, no blocks
    one.feed(batch)
    gaps = one.result(lambda: [batch]).gaps
    assert gaps.times is None
    assert gaps.blocks is None


def test_preallocated_blocks_are_int32():
    batch = frame_batch(STORED)
    gaps = scan.scan(lambda: [batch], [1, 2], rows=len(STORED), block_s=1.0).gaps
    assert gaps.blocks is not None
    assert gaps.blocks.dtype == np.int32
    assert gaps.blocks.tolist() == [1, 2]


def test_the_fallback_for_a_request_in_two_places_keeps_its_blocks():
    gaps = scan.scan_frame(SPLIT, [1], block_s=1.0).gaps
    np.testing.assert_allclose(gaps.values, [1000.0, 1000.0])
    assert gaps.blocks is not None
    assert gaps.blocks.tolist() == [1, 2]


def test_runs_only_for_requests_with_gaps():
    gaps = scan.scan_frame(STORED, [1, 2]).gaps
    assert gaps.request_ids.tolist() == [1]
    assert gaps.counts.tolist() == [2]


def test_the_result_is_the_same_object_when_asked_again():
    batch = frame_batch(STORED)
    one = scan.Scan([1, 2])
    one.feed(batch)
    first = one.result(lambda: [batch])
    assert one.result(lambda: [batch]) is first
