"""The run summary as a typed model, and its JSON form (summary.json, `--json`).

`Summary.to_json()` gives the dict summary.json holds, key for key and in the same order
as before the model existed; `Summary.from_json` reads it back (also files written by
earlier versions: a section they lack is None or empty). Metric distributions are keyed
by the catalogue's `summary_key`, in the catalogue's order; read them with
`Summary.metric(catalogue.TTFT)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.analysis.precision import Precision
from bench.metrics.catalogue import (
    INPUT_TOKENS_PER_S,
    INPUTS_PER_S,
    PREFIX_CACHE_HIT_SHARE,
    SUMMARISED,
    THROUGHPUT,
    TOKEN_DISAGREEMENT_SHARE,
    Metric,
)
from bench.metrics.distribution import Distribution

__all__ = ["Concurrency", "Paired", "PairedCI", "PairedComparison", "Rate", "RequestCounts", "SloSummary",
           "Summary", "Throughput"]

# Throughput keys added later (embeddings, prefix cache, token truth): left out of summary.json when None.
_ABSENT_WHEN_NONE = (INPUT_TOKENS_PER_S.key, INPUTS_PER_S.key, PREFIX_CACHE_HIT_SHARE.key, TOKEN_DISAGREEMENT_SHARE.key)
_BY_SUMMARY_KEY = {m.summary_key: m for m in SUMMARISED if m.summary_key is not None}


@dataclass(frozen=True)
class RequestCounts:
    total: int
    ok: int
    errors: dict[str, int]  # error kind -> requests, kinds sorted

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "ok": self.ok, "errors": dict(self.errors)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestCounts:
        return cls(data["total"], data["ok"], dict(data["errors"]))


@dataclass(frozen=True)
class Throughput:
    """Over the window from the first measured send to the last measured end (None: empty)."""

    window_s: float | None
    requests_per_s: float | None
    output_tokens_per_s: float | None
    total_tokens_per_s: float | None
    input_tokens_per_s: float | None = None
    inputs_per_s: float | None = None  # embeddings only
    prefix_cache_hit_share: float | None = None  # cached / prompt tokens; None: the server never said
    # counted requests with two token counts whose counts differ, over those with two; None: none had two
    token_disagreement_share: float | None = None

    def value(self, metric: Metric) -> float | None:
        """A run-level metric of the catalogue (`catalogue.THROUGHPUT`)."""
        if metric not in THROUGHPUT:
            raise KeyError(f"{metric.label} is not a throughput metric")
        return self.to_json().get(metric.key)

    def to_json(self) -> dict[str, Any]:
        values = {m.key: getattr(self, m.key) for m in THROUGHPUT}
        for key in _ABSENT_WHEN_NONE:  # absent from files written before them, and from runs without them
            if values[key] is None:
                del values[key]
        return {"window_s": self.window_s, **values}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Throughput:
        return cls(data["window_s"], *(data.get(m.key) for m in THROUGHPUT))  # older files lack the later keys


@dataclass(frozen=True)
class Rate:
    offered: float | None  # req/s the scenario asked for; None: closed loop
    achieved: float | None  # sends per second between the first and last send

    def to_json(self) -> dict[str, Any]:
        return {"offered": self.offered, "achieved": self.achieved}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rate:
        return cls(data["offered"], data["achieved"])


@dataclass(frozen=True)
class Concurrency:
    peak: int

    def to_json(self) -> dict[str, Any]:
        return {"peak": self.peak}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Concurrency:
        return cls(data["peak"])


@dataclass(frozen=True)
class SloSummary:
    """Goodput against the scenario's SLO; dicts are keyed by SLO metric key (`Metric.key`)."""

    limits: dict[str, float]
    percentile: float
    share_meeting_all: float | None
    share_meeting: dict[str, float | None]
    value_at_percentile: dict[str, float | None]
    met: bool
    goodput_requests_per_s: float | None
    goodput_output_tokens_per_s: float | None

    def to_json(self) -> dict[str, Any]:
        return {"limits": dict(self.limits), "percentile": self.percentile,
                "share_meeting_all": self.share_meeting_all, "share_meeting": dict(self.share_meeting),
                "value_at_percentile": dict(self.value_at_percentile), "met": self.met,
                "goodput_requests_per_s": self.goodput_requests_per_s,
                "goodput_output_tokens_per_s": self.goodput_output_tokens_per_s}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SloSummary:
        return cls(dict(data["limits"]), data["percentile"], data["share_meeting_all"], dict(data["share_meeting"]),
                   dict(data["value_at_percentile"]), data["met"], data["goodput_requests_per_s"],
                   data["goodput_output_tokens_per_s"])


@dataclass(frozen=True)
class PairedCI:
    """One cell of a paired comparison: the statistic of the baseline (a) and the variant (b)."""

    a: float | None
    b: float | None
    diff: float | None
    low: float | None
    high: float | None
    significant: bool
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "diff": self.diff, "low": self.low, "high": self.high,
                "significant": self.significant, "verdict": self.verdict}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairedCI:
        return cls(data["a"], data["b"], data["diff"], data["low"], data["high"], data["significant"],
                   data["verdict"])


@dataclass(frozen=True)
class PairedComparison:
    pairs: int
    metrics: dict[str, dict[str, PairedCI]]  # metric key -> statistic -> cell
    confidence_per_cell: float
    explanation: str | None

    def to_json(self) -> dict[str, Any]:
        return {"pairs": self.pairs,
                "metrics": {m: {s: ci.to_json() for s, ci in by_stat.items()} for m, by_stat in self.metrics.items()},
                "confidence_per_cell": self.confidence_per_cell, "explanation": self.explanation}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairedComparison:
        metrics = {m: {s: PairedCI.from_json(ci) for s, ci in by_stat.items()} for m, by_stat in data["metrics"].items()}
        return cls(data["pairs"], metrics, data["confidence_per_cell"], data.get("explanation"))


@dataclass(frozen=True)
class Paired:
    baseline: str
    comparisons: dict[str, PairedComparison]  # variant -> its comparison with the baseline

    def to_json(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "comparisons": {k: c.to_json() for k, c in self.comparisons.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Paired:
        return cls(data["baseline"], {k: PairedComparison.from_json(c) for k, c in data["comparisons"].items()})


@dataclass(frozen=True)
class Summary:
    """The measure phase of a run, of one stage, or of one variant.

    `distributions`: summary key -> distribution, for the catalogue's SUMMARISED metrics.
    `saturation`: summary.json's verdicts (`saturation.Verdict.as_dict`), [] when none;
    None when not stored (runs from before it was, and stage or variant summaries).
    """

    distributions: dict[str, Distribution]
    requests: RequestCounts
    throughput: Throughput
    rate: Rate
    concurrency: Concurrency
    slo: SloSummary | None = None
    stages: dict[str, Summary] = field(default_factory=dict)
    variants: dict[str, Summary] = field(default_factory=dict)
    paired: Paired | None = None
    saturation: list[dict[str, Any]] | None = None
    precision: Precision | None = None  # None: not stored (runs from before the intervals were)
    models: dict[str, Summary] = field(default_factory=dict)  # by model, when requests named several

    def metric(self, metric: Metric) -> Distribution:
        """The metric's distribution (an empty one when the summary has none)."""
        if metric.summary_key is None:
            raise KeyError(f"{metric.label} has no distribution in the summary")
        return self.distributions.get(metric.summary_key) or Distribution()

    def to_json(self) -> dict[str, Any]:
        """summary.json's dict: plain JSON types, keys in the stored order."""
        out: dict[str, Any] = {} if self.saturation is None else {"saturation": list(self.saturation)}
        out.update({key: self.distributions[key].to_json()
                    for key in _BY_SUMMARY_KEY if key in self.distributions})
        out.update(requests=self.requests.to_json(), throughput=self.throughput.to_json(),
                   rate=self.rate.to_json(), concurrency=self.concurrency.to_json())
        if self.slo is not None:
            out["slo"] = self.slo.to_json()
        if self.stages:
            out["stages"] = {k: s.to_json() for k, s in self.stages.items()}
        if self.variants:
            out["variants"] = {k: s.to_json() for k, s in self.variants.items()}
        if self.paired is not None:
            out["paired"] = self.paired.to_json()
        if self.models:
            out["models"] = {k: s.to_json() for k, s in self.models.items()}
        if self.precision is not None:  # added last: earlier files read and write back unchanged
            out["precision"] = self.precision.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Summary:
        """From summary.json's dict. KeyError, TypeError or ValueError when it is not one."""
        known = {*_BY_SUMMARY_KEY, "saturation", "requests", "throughput", "rate", "concurrency", "slo", "stages",
                 "variants", "paired", "models", "precision"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown summary keys {sorted(unknown)}")
        saturation = data.get("saturation")
        return cls(
            distributions={key: Distribution.from_json(data[key]) for key in _BY_SUMMARY_KEY if key in data},
            requests=RequestCounts.from_json(data["requests"]),
            throughput=Throughput.from_json(data["throughput"]),
            rate=Rate.from_json(data["rate"]),
            concurrency=Concurrency.from_json(data["concurrency"]),
            slo=SloSummary.from_json(data["slo"]) if data.get("slo") is not None else None,
            stages={k: cls.from_json(s) for k, s in (data.get("stages") or {}).items()},
            variants={k: cls.from_json(s) for k, s in (data.get("variants") or {}).items()},
            paired=Paired.from_json(data["paired"]) if data.get("paired") is not None else None,
            saturation=list(saturation) if saturation is not None else None,
            precision=Precision.from_json(data["precision"]) if data.get("precision") is not None else None,
            models={k: cls.from_json(s) for k, s in (data.get("models") or {}).items()},
        )
