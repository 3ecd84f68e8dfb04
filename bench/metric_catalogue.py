"""The metric catalogue: every metric bench reports, declared once, as pure data.

It sits at the bottom of the layers (beside `records`) so that the scenario schema can take
its SLO keys from here; everything downstream imports it through `bench.metrics.catalogue`,
which adds the counted-requests filter and how each metric's samples are taken. A table,
plot, SLO or comparison names a metric only through an entry here (tests check it), and a
key string such as "ttft_ms" is written in this file and nowhere else in the package.

`key` is the per-request column the metric is computed into (for run-level metrics, the
field of summary.json `throughput`); `summary_key` the key of its distribution in
summary.json (`count, mean, p50 ... max`): the key itself unless `summary_name` says
otherwise, None when the metric is not `summarised`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ANSWER_TPOT",
    "CACHED_TOKENS",
    "COMPARED",
    "COMPARED_RUN",
    "E2E",
    "E2E_SCHEDULED",
    "FROM_SCHEDULE",
    "INPUTS_PER_S",
    "INPUT_TOKENS_PER_S",
    "ITL",
    "LATENCY_TABLE",
    "METRICS",
    "OUTPUT_TOKENS",
    "OUTPUT_TOKENS_PER_S",
    "PAIRED",
    "PLOTTED",
    "PREFIX_CACHE_HIT_SHARE",
    "REASONING",
    "REASONING_TIME",
    "REASONING_TOKENS",
    "REQUESTS_PER_S",
    "REQUEST_OUTPUT_TOKENS_PER_S",
    "SCHEDULE_LAG",
    "SLO",
    "SLO_KEYS",
    "SUMMARISED",
    "THROUGHPUT",
    "TOKEN_COUNT_DIFF",
    "TOKEN_COUNT_REL_DIFF",
    "TOKEN_DISAGREEMENT_SHARE",
    "TOKEN_TRUTH",
    "TOTAL_TOKENS_PER_S",
    "TPOT",
    "TTFT",
    "TTFT_ANSWER",
    "TTFT_REASONING",
    "TTFT_SCHEDULED",
    "Better",
    "Metric",
    "Scope",
    "by_key",
    "compared_metrics",
]


class Scope(Enum):
    """Where a metric's samples come from."""

    COUNTED = "counted"  # one value per counted request: measured and ok
    MEASURED = "measured"  # one value per measured request, failed ones included (they were sent)
    GAPS = "gaps"  # one value per ITL gap of the counted requests, pooled
    RUN = "run"  # one value per run (or stage, or variant): summary.json `throughput`


class Better(Enum):
    LOWER = "lower"
    HIGHER = "higher"
    NEITHER = "neither"  # a property of the workload, not of the server's performance


@dataclass(frozen=True)
class Metric:
    key: str
    label: str  # in reports: "TTFT", "Schedule lag"
    unit: str  # "ms", "tokens", "tok/s", "req/s"
    better: Better
    scope: Scope
    summarised: bool = False  # summary.json holds its distribution
    summary_name: str | None = None  # ... under this key instead of `key`
    short: str = ""  # in console tables, when the label is too long for 80 columns
    slo: bool = False  # a scenario may set a limit on it (`slo:`), goodput counts it
    plotted: bool = False  # in every latency figure (CDF, ladder, sweep) and percentile check
    compared: bool = False  # in `bench compare`
    paired: bool = False  # in the paired comparison of sampling variants
    reasoning: bool = False  # a reasoning-phase metric: its own report table, not the latency table
    from_schedule: bool = False  # from the scheduled send (open loop): its own report table
    token_truth: bool = False  # output-token counts from two sources compared: its own report table

    @property
    def summary_key(self) -> str | None:
        if not self.summarised:
            return None
        return self.summary_name or self.key

    @property
    def console(self) -> str:
        return self.short or self.label

    @property
    def heading(self) -> str:
        """The label with its unit, unless the label says it: "TTFT (ms)"."""
        return self.label if self.unit in self.label else f"{self.label} ({self.unit})"


TTFT = Metric("ttft_ms", "TTFT", "ms", Better.LOWER, Scope.COUNTED, summarised=True,
              slo=True, plotted=True, compared=True, paired=True)
ITL = Metric("itl_ms", "ITL", "ms", Better.LOWER, Scope.GAPS, summarised=True, plotted=True, compared=True)
TPOT = Metric("tpot_ms", "TPOT", "ms", Better.LOWER, Scope.COUNTED, summarised=True,
              slo=True, plotted=True, compared=True, paired=True)
E2E = Metric("e2e_ms", "E2E", "ms", Better.LOWER, Scope.COUNTED, summarised=True,
             slo=True, plotted=True, compared=True, paired=True)
SCHEDULE_LAG = Metric("schedule_lag_ms", "Schedule lag", "ms", Better.LOWER, Scope.MEASURED,
                      summarised=True, short="Sched lag")
OUTPUT_TOKENS = Metric("output_tokens", "output tokens", "tokens", Better.NEITHER, Scope.COUNTED,
                       summarised=True, summary_name="output_tokens_per_request", paired=True)
REQUEST_OUTPUT_TOKENS_PER_S = Metric("output_tokens_per_s", "output tok/s per request", "tok/s", Better.HIGHER,
                                     Scope.COUNTED, short="tok/s/req", compared=True)
REQUESTS_PER_S = Metric("requests_per_s", "requests/s", "req/s", Better.HIGHER, Scope.RUN, short="req/s",
                        compared=True)
OUTPUT_TOKENS_PER_S = Metric("output_tokens_per_s", "output tokens/s", "tok/s", Better.HIGHER, Scope.RUN,
                             short="tok/s", compared=True)
TOTAL_TOKENS_PER_S = Metric("total_tokens_per_s", "total tokens/s", "tok/s", Better.HIGHER, Scope.RUN)
# usage.prompt_tokens of the counted requests per second (None when no server counted them).
INPUT_TOKENS_PER_S = Metric("input_tokens_per_s", "input tokens/s", "tok/s", Better.HIGHER, Scope.RUN,
                            short="in tok/s", compared=True)
# Embeddings: inputs (one embedding each) of the counted requests per second (None for other endpoints).
INPUTS_PER_S = Metric("inputs_per_s", "inputs/s", "inputs/s", Better.HIGHER, Scope.RUN, short="in/s",
                      compared=True)

# Reasoning phases (`bench.metrics.phases`): reasoning chunks, then the answer (content or a
# tool call). TTFT keeps its meaning (first output of any kind); these sit beside it. The
# compared ones join `bench compare` only when a run streamed reasoning (`compared_metrics`).
TTFT_REASONING = Metric("ttft_reasoning_ms", "Time to first reasoning token", "ms", Better.LOWER,
                        Scope.COUNTED, summarised=True, short="TTF reasoning", reasoning=True)
TTFT_ANSWER = Metric("ttft_answer_ms", "Time to first answer token", "ms", Better.LOWER, Scope.COUNTED,
                     summarised=True, short="TTF answer", compared=True, reasoning=True)
REASONING_TIME = Metric("reasoning_ms", "Reasoning time", "ms", Better.LOWER, Scope.COUNTED,
                        summarised=True, compared=True, reasoning=True)
REASONING_TOKENS = Metric("reasoning_tokens", "reasoning tokens", "tokens", Better.NEITHER, Scope.COUNTED,
                          summarised=True, summary_name="reasoning_tokens_per_request", reasoning=True)
ANSWER_TPOT = Metric("answer_tpot_ms", "Answer TPOT", "ms", Better.LOWER, Scope.COUNTED, summarised=True,
                     compared=True, reasoning=True)

# Open loop, corrected for coordinated omission: measured from the scheduled send time, what
# a user who arrived on schedule waited. Each exceeds its metric from the real send by the
# request's schedule lag; reports show them for open-loop runs (in a closed loop a request
# is scheduled when its slot frees, so they add only the client's own delay).
TTFT_SCHEDULED = Metric("ttft_scheduled_ms", "TTFT from schedule", "ms", Better.LOWER, Scope.COUNTED,
                        summarised=True, short="TTFT sched", from_schedule=True)
E2E_SCHEDULED = Metric("e2e_scheduled_ms", "E2E from schedule", "ms", Better.LOWER, Scope.COUNTED,
                       summarised=True, short="E2E sched", from_schedule=True)

# Prefix cache: prompt tokens the server's cache held (`usage.prompt_tokens_details.cached_tokens`),
# and their share of the counted requests' prompt tokens (None when the server never said).
CACHED_TOKENS = Metric("cached_tokens", "cached prompt tokens", "tokens", Better.NEITHER, Scope.COUNTED,
                       summarised=True, summary_name="cached_tokens_per_request", short="cached tok")
PREFIX_CACHE_HIT_SHARE = Metric("prefix_cache_hit_share", "prefix-cache hit share", "share", Better.NEITHER,
                                Scope.RUN, short="cache hits")

# Token truth (scenario `tokens:`): the output tokens a request's metrics use (its
# `token_source`: usage, else the server's /tokenize, else a local tokenizer, else chunks)
# against the next independent count of the same answer (`token_check_source`). The
# difference is used minus check (a usage that under-counts by k gives -k); the relative one
# is its size over the check count; the share counts the requests with both whose counts differ.
TOKEN_COUNT_DIFF = Metric("token_count_diff", "token count difference", "tokens", Better.NEITHER, Scope.COUNTED,
                          summarised=True, short="tok diff", token_truth=True)
TOKEN_COUNT_REL_DIFF = Metric("token_count_rel_diff", "token count difference, relative", "share", Better.NEITHER,
                              Scope.COUNTED, summarised=True, short="tok diff rel", token_truth=True)
# Compared (in `bench compare`) only when a run counted tokens twice: per-token figures of runs
# whose counts disagree differently are not alike.
TOKEN_DISAGREEMENT_SHARE = Metric("token_disagreement_share", "token-count disagreement share", "share",
                                  Better.NEITHER, Scope.RUN, short="tok disagree", compared=True, token_truth=True)

METRICS = (TTFT, ITL, TPOT, E2E, SCHEDULE_LAG, OUTPUT_TOKENS, REQUEST_OUTPUT_TOKENS_PER_S,
           REQUESTS_PER_S, OUTPUT_TOKENS_PER_S, TOTAL_TOKENS_PER_S, INPUT_TOKENS_PER_S, INPUTS_PER_S,
           TTFT_REASONING, TTFT_ANSWER, REASONING_TIME, REASONING_TOKENS, ANSWER_TPOT,
           TTFT_SCHEDULED, E2E_SCHEDULED, CACHED_TOKENS, PREFIX_CACHE_HIT_SHARE,
           TOKEN_COUNT_DIFF, TOKEN_COUNT_REL_DIFF, TOKEN_DISAGREEMENT_SHARE)

# Views of the catalogue, in its order (which is the order of every table and of summary.json).
_PER_REQUEST = tuple(m for m in METRICS if m.scope is not Scope.RUN)
SUMMARISED = tuple(m for m in METRICS if m.summarised)
LATENCY_TABLE = tuple(m for m in SUMMARISED if m.unit == "ms" and not (m.reasoning or m.from_schedule))
REASONING = tuple(m for m in METRICS if m.reasoning)  # the report's reasoning-phase table
FROM_SCHEDULE = tuple(m for m in METRICS if m.from_schedule)  # the report's open-loop table
TOKEN_TRUTH = tuple(m for m in METRICS if m.token_truth)  # the report's token-count table
PLOTTED = tuple(m for m in METRICS if m.plotted)
SLO = tuple(m for m in METRICS if m.slo)
SLO_KEYS = tuple(m.key for m in SLO)
COMPARED = tuple(m for m in _PER_REQUEST if m.compared)
COMPARED_RUN = tuple(m for m in METRICS if m.scope is Scope.RUN and m.compared)
PAIRED = tuple(m for m in METRICS if m.paired)
THROUGHPUT = tuple(m for m in METRICS if m.scope is Scope.RUN)


def compared_metrics(reasoned: bool = False) -> tuple[Metric, ...]:
    """The per-request metrics `bench compare` compares: the reasoning-phase ones only when a
    run streamed reasoning, so that a comparison without them keeps its Bonferroni family."""
    return tuple(m for m in COMPARED if reasoned or not m.reasoning)


def by_key(key: str, scope_run: bool = False) -> Metric:
    """The per-request metric with this key (a run-level one with `scope_run`); KeyError if none."""
    for metric in METRICS:
        if metric.key == key and (metric.scope is Scope.RUN) == scope_run:
            return metric
    raise KeyError(f"no metric {key!r} in the catalogue")
