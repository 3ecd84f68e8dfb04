"""benchmarks/pacing_ab.py's round at a small scale: both trees' clients run at once, and each
is credited with the chunks it stamped in the window, at the server's pace."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import pacing_ab

ROOT = Path(__file__).resolve().parents[2]
RATE, STREAMS, TOKENS, WINDOW = 40.0, 4, 8, 1.0


def test_a_round_counts_each_trees_chunks_in_the_same_window():
    got = pacing_ab.one_round({"a": ROOT, "b": ROOT}, STREAMS, 1, rate=RATE, tokens=TOKENS, window_s=WINDOW,
                              settle_s=0.3, startup_s=4.0)
    assert set(got) == {"a", "b"}
    for chunks, cpu_s in got.values():
        # 4 streams at 40 tok/s, less the turn between answers, more where an answer's
        # random first-token phase came early (as tests/e2e/test_pacing_benchmark.py)
        assert 0.7 * STREAMS * RATE * WINDOW <= chunks <= 1.15 * STREAMS * RATE * WINDOW
        assert 0 < cpu_s < 2 * WINDOW
