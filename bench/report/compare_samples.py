"""The samples `bench compare` resamples: each compared metric's values in one run, with the
block of run time of each (`BLOCK_S`): counted requests by send time, ITL gaps by arrival time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bench.analysis import stats
from bench.metrics import catalogue
from bench.metrics.catalogue import ITL, Scope

if TYPE_CHECKING:
    from bench.analysis.results import Run

__all__ = ["BLOCK_S", "Sample", "metric_samples", "run_metric_samples"]

BLOCK_S = stats.BLOCK_S  # the blocks of run time the summary's intervals resample too


@dataclass(frozen=True)
class Sample:
    values: np.ndarray
    groups: np.ndarray | None = None  # cluster labels (blocks of run time) resampled together


def run_metric_samples(run: Run) -> dict[str, Sample]:
    """Each compared metric's samples (by key), grouped in BLOCK_S blocks of run time:
    counted requests by send time, ITL gaps by arrival time. Once per loaded run (`Run.memo`)."""
    return run.memo("compare_samples", lambda: _samples(catalogue.counted(run.requests), *run.itl_with_blocks(BLOCK_S)))


def metric_samples(ok: pd.DataFrame, itl: pd.DataFrame) -> dict[str, Sample]:
    """`run_metric_samples` of given counted requests and their ITL gaps (`Run.itl` rows)."""
    return _samples(ok, itl[ITL.key].to_numpy(dtype="float64"), np.floor(itl["t_s"].to_numpy(dtype="float64") / BLOCK_S))


def _samples(ok: pd.DataFrame, gaps: np.ndarray, gap_blocks: np.ndarray) -> dict[str, Sample]:
    """The blocks are codes the bootstrap only tells apart: int32 for the gaps (4 bytes a gap),
    float64 elsewhere, the same groups either way."""
    sent_blocks = np.floor(ok["sent_s"].to_numpy(dtype="float64") / BLOCK_S)
    out = {}
    for metric in catalogue.COMPARED:
        if metric.scope is Scope.GAPS:
            out[metric.key] = Sample(gaps, gap_blocks)
        else:
            assert metric.scope is Scope.COUNTED  # the blocks are the counted requests' send times
            out[metric.key] = Sample(catalogue.request_values(metric, ok), sent_blocks)
    return out
