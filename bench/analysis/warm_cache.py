"""A warm prefix cache at the start of a run: the first requests already hit the cache.

No request of the run can have filled the server's prefix cache before some request had its
first token (its prompt was processed then). A request sent before the run's first token
that still reports cached prompt tokens (`usage.prompt_tokens_details.cached_tokens`) found
what an earlier run, or another client, left there: its TTFT and the run's cache-hit share
are not those of this workload alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.errors import ValidityWarning
from bench.metrics.catalogue import CACHED_TOKENS

__all__ = ["check_warm_cache"]


def check_warm_cache(requests: Any) -> list[ValidityWarning]:
    """`requests`: the per-request frame (warmup included: the run's first requests)."""
    if CACHED_TOKENS.key not in requests or "first_token_s" not in requests or requests.empty:
        return []
    first_token = requests["first_token_s"].to_numpy(dtype="float64", na_value=np.nan)
    if not np.isfinite(first_token).any():
        return []
    before = requests["sent_s"].to_numpy(dtype="float64", na_value=np.nan) <= np.nanmin(first_token)
    cached = requests[CACHED_TOKENS.key].to_numpy(dtype="float64", na_value=np.nan)[before]
    hit = int((cached > 0).sum())
    if hit == 0:
        return []
    return [ValidityWarning("warm_cache", (
        f"warm prefix cache: {hit} of the {int(before.sum())} requests sent before the run's first token "
        f"(none of this run's prompts was processed yet) reported cached prompt tokens (up to {int(np.nanmax(cached))}): "
        "an earlier run or another client left the cache warm; restart the server or vary the prompts "
        "(seed) for a cold start"))]
