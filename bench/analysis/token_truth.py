"""Token truth: a validity check on output-token counts that disagree.

When the scenario counts tokens (`tokens:`), each counted request has its output tokens from
the first source it has (`token_source`) and a difference against the next independent count
(`token_check_source`; `bench.metrics.derive`). A difference of a token is normal: a server's
usage counts the EOS token it generated, which leaves no text to re-tokenise. A median
request off by more than that and by more than MAX_TOKEN_REL_DIFF means every per-token
figure (output tokens/s, TPOT) carries that error: the count's source is in doubt.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.errors import ValidityWarning
from bench.metrics.catalogue import TOKEN_COUNT_DIFF, TOKEN_COUNT_REL_DIFF, counted

__all__ = ["MAX_TOKEN_REL_DIFF", "TOKEN_DIFF_FLOOR", "check_token_counts"]

# 5 %: the run-to-run spread of output tokens/s and TPOT on a quiet server is a few percent;
# a count error beyond it changes what a comparison of two runs would conclude.
MAX_TOKEN_REL_DIFF = 0.05
TOKEN_DIFF_FLOOR = 1.0  # tokens: the EOS token a usage counts and no text shows


def check_token_counts(requests: Any) -> list[ValidityWarning]:
    """A warning when the median counted request's two output-token counts differ by more
    than TOKEN_DIFF_FLOOR tokens and by more than MAX_TOKEN_REL_DIFF of the check count."""
    if TOKEN_COUNT_DIFF.key not in requests or "token_check_source" not in requests:
        return []
    ok = counted(requests)
    diff = ok[TOKEN_COUNT_DIFF.key].to_numpy(dtype="float64", na_value=np.nan)
    both = np.isfinite(diff)
    if not both.any():
        return []
    relative = float(np.median(ok[TOKEN_COUNT_REL_DIFF.key].to_numpy(dtype="float64", na_value=np.nan)[both]))
    size = float(np.median(np.abs(diff[both])))
    if size <= TOKEN_DIFF_FLOOR or relative <= MAX_TOKEN_REL_DIFF:
        return []
    pairs = ok.loc[both, ["token_source", "token_check_source"]].astype(str).value_counts()
    used, check = pairs.index[0]
    return [ValidityWarning("token_counts", (
        f"output token counts disagree: the median request's {used} count is {size:g} tokens "
        f"({relative:.1%}) off its {check} count (median difference {float(np.median(diff[both])):+g}, "
        f"{int(both.sum())} requests with both); output tokens/s and TPOT use the {used} count"))]
