"""The ITL gaps of a scan (`bench.metrics.scan`): each request's gaps as one contiguous run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.metric_catalogue import ITL

__all__ = ["ItlGaps"]


@dataclass
class ItlGaps:
    """ITL gaps (ms) of some requests: each request's gaps are one contiguous run, in the
    order its chunks were stored (a request's choices one after another, each in time order)."""

    values: np.ndarray | None  # float64; None once consumed by `take(..., consume=True)`
    request_ids: np.ndarray  # int64, the request of each run
    counts: np.ndarray  # int64, gaps in each run
    times: np.ndarray | None = None  # float64, each gap's closing chunk time, when asked for
    blocks: np.ndarray | None = None  # int32 (int16 if the scan was told), floor(closing chunk time / block_s)

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
