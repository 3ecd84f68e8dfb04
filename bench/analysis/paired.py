"""Paired comparison of sampling variants: the same prompt under each variant, per block.

Pairs are (baseline request, variant request) of one block (the same prompt, sent close
together on the shared schedule), both measured and successful. Differences get a seeded
paired bootstrap CI, simultaneous over the comparison's cells (Bonferroni); an interval
containing 0, or a difference under NOISE_FLOOR of the baseline, is "not significant". Because a sampling
change moves where EOS lands, and so the load itself, the output-length shift is reported
too, and an E2E difference that comes with a length difference but no per-token (TPOT)
difference is called out as explained by output length.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis import stats
from bench.analysis.summary_model import Paired, PairedCI, PairedComparison
from bench.metrics import catalogue
from bench.metrics.catalogue import E2E, OUTPUT_TOKENS, TPOT

__all__ = ["FAMILY_CONFIDENCE", "NOISE_FLOOR", "N_RESAMPLES", "PAIRED_STATISTICS", "paired_variants"]

PAIRED_STATISTICS = ("mean", "p50")
FAMILY_CONFIDENCE = 0.95  # over all metric x statistic cells of one comparison (Bonferroni)
N_RESAMPLES = 2000  # Bonferroni tails need more resamples than a plain 95 % interval
# A difference smaller than this share of the baseline is reported as not significant even
# when its interval excludes 0: a few percent is within run-to-run noise of latency.
NOISE_FLOOR = 0.05


def paired_variants(requests: pd.DataFrame, baseline: str | None = None, seed: int = 0) -> Paired | None:
    """Per variant vs the baseline (first variant by name unless given): paired CIs of the
    catalogue's PAIRED metrics, over the counted requests (measured and ok)."""
    ok = catalogue.counted(requests)
    ok = ok[ok["variant"].fillna("") != ""]
    names = sorted(catalogue.measured(requests)["variant"].dropna().unique().tolist())
    names = [name for name in names if name]
    if len(names) < 2:
        return None
    base = baseline if baseline is not None and baseline in names else names[0]
    return Paired(base, {name: _compare(ok, base, name, seed) for name in names if name != base})


def _compare(ok: pd.DataFrame, base: str, other: str, seed: int) -> PairedComparison:
    pairs = _pairs(ok, base, other)
    cells = len(catalogue.PAIRED) * len(PAIRED_STATISTICS)
    confidence = 1 - (1 - FAMILY_CONFIDENCE) / cells
    metrics: dict[str, dict[str, PairedCI]] = {}
    for metric in catalogue.PAIRED:
        a = pairs[f"{metric.key}_a"].to_numpy(dtype="float64", na_value=np.nan)
        b = pairs[f"{metric.key}_b"].to_numpy(dtype="float64", na_value=np.nan)
        cis = stats.paired_bootstrap_diff(a, b, PAIRED_STATISTICS, seed=seed, confidence=confidence,
                                          n_resamples=N_RESAMPLES)
        metrics[metric.key] = {name: _ci(ci) for name, ci in cis.items()}
    return PairedComparison(len(pairs), metrics, confidence, _explain(metrics))


def _pairs(ok: pd.DataFrame, base: str, other: str) -> pd.DataFrame:
    cols = ["block", *(m.key for m in catalogue.PAIRED)]
    a = ok[ok["variant"] == base][cols].drop_duplicates("block")
    b = ok[ok["variant"] == other][cols].drop_duplicates("block")
    return a.merge(b, on="block", suffixes=("_a", "_b"))


def _ci(ci: stats.DiffCI) -> PairedCI:
    material = np.isfinite(ci.a) and abs(ci.diff) >= NOISE_FLOOR * abs(ci.a)
    significant = bool(ci.significant and material)
    verdict = ci.verdict if significant or ci.verdict == "n/a" else "not significant"
    num = stats.finite_or_none
    return PairedCI(num(ci.a), num(ci.b), num(ci.diff), num(ci.low), num(ci.high), significant, verdict)



def _explain(metrics: dict[str, dict[str, PairedCI]]) -> str | None:
    e2e, tpot, length = (metrics[m.key]["mean"] for m in (E2E, TPOT, OUTPUT_TOKENS))
    if not e2e.significant:
        return None
    if length.significant and not tpot.significant and length.diff is not None:
        direction = "longer" if length.diff > 0 else "shorter"
        return (f"E2E differs because outputs are {direction} ({length.diff:+.1f} tokens on average); "
                "per-token time (TPOT) does not differ significantly")
    if tpot.significant:
        return "per-token time (TPOT) differs: the variant changes generation speed, not only output length"
    return None
