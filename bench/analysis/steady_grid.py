"""The grid `bench.analysis.steady` samples a run on: from its requests' raw fields alone,
so that finalize can count the steady state's token rate in its one read of the chunks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.metrics.catalogue import counted

__all__ = ["BINS", "MIN_REQUESTS", "grid", "steady_bin_s"]

BINS = 200  # samples of each series over the run
MIN_REQUESTS = 100  # fewer counted requests than this: too few for a window's percentiles


def steady_bin_s(requests: pd.DataFrame, bins: int = BINS) -> float | None:
    """The width of the token-rate bins `steady_state` reads for a run of these requests
    (`Run.requests`, or the raw ones: only raw fields are read), None when it reads none: so
    that they can be counted in the same read of the chunks as other figures."""
    window = grid(requests, bins)
    return window[4] if window is not None else None


def grid(requests: pd.DataFrame, bins: int) -> tuple[pd.DataFrame, pd.DataFrame, float, float, float] | None:
    """(measured requests, counted ones, start, end, bin width), None when too short or too few."""
    requests = requests[requests["phase"] == "measure"] if "phase" in requests else requests
    ok = counted(requests)
    if len(ok) < MIN_REQUESTS:
        return None
    start, end = float(requests["sent_s"].min()), float(ok["end_s"].max())
    bin_s = (end - start) / bins
    if not np.isfinite(bin_s) or bin_s < 0.01:
        return None
    return requests, ok, start, end, bin_s
