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

from typing import Any

import numpy as np
import pandas as pd

from bench.analysis import stats

PAIRED_METRICS = ("ttft_ms", "tpot_ms", "e2e_ms", "output_tokens")
PAIRED_STATISTICS = ("mean", "p50")
FAMILY_CONFIDENCE = 0.95  # over all metric x statistic cells of one comparison (Bonferroni)
N_RESAMPLES = 2000  # Bonferroni tails need more resamples than a plain 95 % interval
# A difference smaller than this share of the baseline is reported as not significant even
# when its interval excludes 0: a few percent is within run-to-run noise of latency.
NOISE_FLOOR = 0.05


def paired_variants(requests: pd.DataFrame, baseline: str | None = None, seed: int = 0) -> dict[str, Any] | None:
    """Per variant vs the baseline (first variant by name unless given): paired CIs."""
    measured = requests[(requests["phase"] == "measure") & (requests["variant"].fillna("") != "")]
    names = sorted(measured["variant"].unique().tolist())
    if len(names) < 2:
        return None
    base = baseline if baseline in names else names[0]
    return {"baseline": base,
            "comparisons": {name: _compare(measured, base, name, seed) for name in names if name != base}}


def _compare(measured: pd.DataFrame, base: str, other: str, seed: int) -> dict[str, Any]:
    pairs = _pairs(measured, base, other)
    result: dict[str, Any] = {"pairs": int(len(pairs)), "metrics": {}}
    cells = len(PAIRED_METRICS) * len(PAIRED_STATISTICS)
    confidence = 1 - (1 - FAMILY_CONFIDENCE) / cells
    result["confidence_per_cell"] = confidence
    for metric in PAIRED_METRICS:
        a = pairs[f"{metric}_a"].to_numpy(dtype="float64", na_value=np.nan)
        b = pairs[f"{metric}_b"].to_numpy(dtype="float64", na_value=np.nan)
        cis = stats.paired_bootstrap_diff(a, b, PAIRED_STATISTICS, seed=seed, confidence=confidence,
                                          n_resamples=N_RESAMPLES)
        result["metrics"][metric] = {name: _ci_dict(ci) for name, ci in cis.items()}
    result["explanation"] = _explain(result["metrics"])
    return result


def _pairs(measured: pd.DataFrame, base: str, other: str) -> pd.DataFrame:
    ok = measured[measured["status"] == "ok"]
    cols = ["block", *PAIRED_METRICS]
    a = ok[ok["variant"] == base][cols].drop_duplicates("block")
    b = ok[ok["variant"] == other][cols].drop_duplicates("block")
    return a.merge(b, on="block", suffixes=("_a", "_b"))


def _ci_dict(ci: stats.DiffCI) -> dict[str, Any]:
    material = np.isfinite(ci.a) and abs(ci.diff) >= NOISE_FLOOR * abs(ci.a)
    significant = bool(ci.significant and material)
    verdict = ci.verdict if significant or ci.verdict == "n/a" else "not significant"
    return {"a": _num(ci.a), "b": _num(ci.b), "diff": _num(ci.diff), "low": _num(ci.low), "high": _num(ci.high),
            "significant": significant, "verdict": verdict}


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _explain(metrics: dict[str, Any]) -> str | None:
    e2e, tpot, length = (metrics[m]["mean"] for m in ("e2e_ms", "tpot_ms", "output_tokens"))
    if not e2e["significant"]:
        return None
    if length["significant"] and not tpot["significant"]:
        direction = "longer" if length["diff"] > 0 else "shorter"
        return (f"E2E differs because outputs are {direction} ({length['diff']:+.1f} tokens on average); "
                "per-token time (TPOT) does not differ significantly")
    if tpot["significant"]:
        return "per-token time (TPOT) differs: the variant changes generation speed, not only output length"
    return None
