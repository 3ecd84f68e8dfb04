"""Metric dialects: TTFT, ITL, TPOT, E2E and output throughput as other benchmark tools
define them, computed from the chunks bench stored for a run.

The tools disagree on the same server because they define the metrics differently: which
chunk is the first token (a role-only chunk, a reasoning chunk), whether ITL is every gap
pooled over requests or a per-request mean, whether TPOT counts the first token, where a
request ends (the last text chunk, the trailing usage chunk, the end of the body). Each
definition below was read from the tool's public source (tool, version or commit, file)
and re-expressed over bench's chunk records; no code was taken from the tools.

| tool | TTFT: first chunk of | ITL | TPOT | E2E ends at | source read |
| --- | --- | --- | --- | --- | --- |
| bench | any output (content, reasoning, tool call, refusal) | every gap between output chunks, pooled | (E2E - TTFT) / (tokens - 1) | last output chunk | this package |
| vllm | any event with `choices` (a role-only chunk counts) | every gap between such events, pooled | (E2E - TTFT) / (tokens - 1) | last event, usage chunk included | vllm-project/vllm `vllm/benchmarks/serve.py` @009e6d4a (calculate_metrics), `vllm/benchmarks/lib/endpoint_request_func.py` @3aee4a4f (chat) |
| sglang | `delta.content` | every gap between content chunks, pooled | (E2E - TTFT) / (tokens - 1) | last line received | sgl-project/sglang `python/sglang/bench_serving.py` @0033168f |
| guidellm | `delta.content` | per request (last - first content) / (tokens - 1) | per request (last content - start) / tokens | end of the response | vllm-project/guidellm `src/guidellm/schemas/request_stats.py` @06cef291, `src/guidellm/backends/openai/request_handlers.py` @da2c983d |
| aiperf | any response with data (content or reasoning) | per request (E2E - TTFT) / (tokens - 1) | (none: AIPerf's ITL is this) | last response with data | ai-dynamo/aiperf `src/aiperf/metrics/types/ttft_metric.py` @58028d5b, `inter_token_latency_metric.py` @58dd5dea, `request_latency_metric.py` @4f7ccffd |
| inference-perf | `content`, `reasoning` or `reasoning_content` | every gap between output tokens, pooled (a k-token chunk: its gap, then k - 1 zeros) | per request (last - first token) / (tokens - 1) | end of the response | kubernetes-sigs/inference-perf `inference_perf/apis/chat.py` @005a9a31, `inference_perf/reportgen/base.py` (main, read 2026-11-30) |
| llmperf | `delta.content` | per request (last content - start) / tokens (TTFT included) | (none) | end of the response | ray-project/llmperf `src/llmperf/ray_clients/openai_chat_completions_client.py` @0451d33b, `token_benchmark_ray.py` @004d3afb |

Common to every dialect here: the start is bench's `sent_s` (the last request byte on the
wire; the tools take theirs just before their HTTP call); output tokens are the server's
`usage.completion_tokens` when given, else the tokens of the tool's text chunks (vLLM:
content and reasoning) counted as bench counts them (the server's per-chunk count, else 1
a chunk) -- the tools tokenise the text instead (SGLang falls back to the requested
length), so runs without usage differ; output throughput is the counted requests' tokens
over the run window (first measured send to last measured end), as every tool divides by
its benchmark duration. Counted requests are bench's (measured and ok); a request without
a chunk of the tool's first-token kinds has no TTFT here (SGLang would report 0). The
`[DONE]` line is not stored: SGLang's and vLLM's last event is the last stored one (usage),
which arrives with `[DONE]` in practice. Dialects assume n = 1 (the tools send one choice).
Where bench's records are coarser than a tool's parser: bench records an event with neither
choices nor usage as `other`, like a finish-only chunk, and vLLM counts both (it skips only
the first kind); AIPerf is taken to count tool-call deltas as responses with data, as bench
does (its parser was not read for them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

import numpy as np
import pandas as pd

from bench.metrics import scan
from bench.metrics.catalogue import counted, counted_ids, measured
from bench.metrics.distribution import Distribution, distribution
from bench.records import CHUNK_KINDS, OUTPUT_KINDS, ChunkBatch

__all__ = ["DIALECTS", "Dialect", "DialectFigures", "End", "Itl", "Tpot", "by_name", "dialect_figures",
           "names"]


class Itl(Enum):
    POOLED = "every gap between consecutive token chunks, pooled over requests"
    POOLED_TOKENS = "every gap between consecutive tokens (a k-token chunk: its gap, then k - 1 zeros), pooled"
    DECODE_MEAN = "per request: (last token - first token) / (tokens - 1)"
    LATENCY_MEAN = "per request: (E2E - TTFT) / (tokens - 1)"
    WITH_TTFT = "per request: (last token - start) / tokens, TTFT included"


class Tpot(Enum):
    E2E_DECODE = "(E2E - TTFT) / (tokens - 1)"
    STREAM_DECODE = "(last token - first token) / (tokens - 1)"
    WITH_FIRST = "(last token - start) / tokens, first token included"
    NONE = "not defined by the tool"


class End(Enum):
    LAST_TOKEN = "the last token chunk"
    LAST_EVENT = "the last stored event (the usage chunk included)"
    BODY_END = "the end of the response body"


_ALL_BUT_USAGE = tuple(k for k in CHUNK_KINDS if k != "usage")


@dataclass(frozen=True)
class Dialect:
    name: str  # --as NAME
    tool: str  # in tables
    source: str  # where the definition was read: repository, commit, files
    first: str  # which chunk is the first token, in words
    stream: tuple[str, ...]  # chunk kinds that are token arrivals for the tool (CHUNK_KINDS names)
    itl: Itl
    tpot: Tpot
    end: End
    text: tuple[str, ...] = ()  # kinds whose tokens count when usage is missing (default: `stream`)

    @property
    def counted_kinds(self) -> tuple[str, ...]:
        return self.text or self.stream


DIALECTS = (
    Dialect("bench", "bench", "bench.metrics.scan, bench.metrics.derive",
            "any output chunk (content, reasoning, tool call, refusal)", OUTPUT_KINDS,
            Itl.POOLED, Tpot.E2E_DECODE, End.LAST_TOKEN),
    Dialect("vllm", "vLLM bench serve",
            "vllm-project/vllm@009e6d4a vllm/benchmarks/serve.py; @3aee4a4f vllm/benchmarks/lib/"
            "endpoint_request_func.py (async_request_openai_chat_completions)",
            "any event with choices (a role-only chunk counts)", _ALL_BUT_USAGE,
            Itl.POOLED, Tpot.E2E_DECODE, End.LAST_EVENT, text=("content", "reasoning")),
    Dialect("sglang", "SGLang bench_serving",
            "sgl-project/sglang@0033168f python/sglang/bench_serving.py (async_request_openai_chat_completions, "
            "calculate_metrics)", "delta.content", ("content",), Itl.POOLED, Tpot.E2E_DECODE, End.LAST_EVENT),
    Dialect("guidellm", "GuideLLM",
            "vllm-project/guidellm@06cef291 src/guidellm/schemas/request_stats.py; @da2c983d "
            "src/guidellm/backends/openai/request_handlers.py", "delta.content", ("content",),
            Itl.DECODE_MEAN, Tpot.WITH_FIRST, End.BODY_END),
    Dialect("aiperf", "AIPerf",
            "ai-dynamo/aiperf src/aiperf/metrics/types/ttft_metric.py@58028d5b, "
            "inter_token_latency_metric.py@58dd5dea, request_latency_metric.py@4f7ccffd",
            "any response with data (content or reasoning)", OUTPUT_KINDS,
            Itl.LATENCY_MEAN, Tpot.NONE, End.LAST_TOKEN),
    Dialect("inference-perf", "inference-perf",
            "kubernetes-sigs/inference-perf@005a9a31 inference_perf/apis/chat.py; inference_perf/reportgen/base.py "
            "(main, read 2026-11-30)", "delta.content, reasoning or reasoning_content", ("content", "reasoning"),
            Itl.POOLED_TOKENS, Tpot.STREAM_DECODE, End.BODY_END),
    Dialect("llmperf", "LLMPerf",
            "ray-project/llmperf@0451d33b src/llmperf/ray_clients/openai_chat_completions_client.py; "
            "@004d3afb token_benchmark_ray.py", "delta.content", ("content",),
            Itl.WITH_TTFT, Tpot.NONE, End.BODY_END),
)


def names() -> tuple[str, ...]:
    return tuple(d.name for d in DIALECTS)


def by_name(name: str) -> Dialect:
    """The dialect called `name` (`--as`); KeyError naming the known ones otherwise."""
    for dialect in DIALECTS:
        if dialect.name == name:
            return dialect
    raise KeyError(f"no metric dialect {name!r} (one of {', '.join(names())})")


@dataclass(frozen=True)
class DialectFigures:
    """One tool's figures for a run (ms, tok/s); a metric the tool does not define is None."""

    dialect: Dialect
    ttft: Distribution
    itl: Distribution
    tpot: Distribution | None
    e2e: Distribution
    output_tokens_per_s: float | None
    requests: int  # counted requests (measured and ok)


Batches = Callable[[], Iterable[ChunkBatch]]


def dialect_figures(requests: pd.DataFrame, batches: Batches,
                    dialects: Iterable[Dialect] = DIALECTS) -> list[DialectFigures]:
    """Each dialect's figures for a run: `requests` is the run's per-request frame
    (`Run.requests`), `batches` its chunk batches (`Run.chunk_batches()`). One streaming
    scan of the chunks per set of kinds the dialects need, and one more per dialect that
    pools gaps (its gaps are held only while its ITL is computed): about 0.3 s per million
    chunks each, 7 scans for all the dialects, on this machine."""
    scans = _Scans(batches, counted_ids(requests))
    return [_figures(d, requests, scans) for d in dialects]


class _Scans:
    """Scans of the run's chunks by set of kinds: the token statistics are kept for the
    next dialect that needs them; the ITL gaps (up to 8 bytes a chunk) only by the caller."""

    def __init__(self, batches: Batches, keep: np.ndarray) -> None:
        self._batches = batches
        self._keep = keep
        self._stats: dict[tuple[str, ...], pd.DataFrame] = {}

    def stats(self, kinds: tuple[str, ...]) -> pd.DataFrame:
        key = tuple(sorted(kinds))
        if key not in self._stats:
            self._stats[key] = scan.scan(self._batches, [], kinds=kinds).stats
        return self._stats[key]

    def with_gaps(self, kinds: tuple[str, ...]) -> scan.ScanResult:
        result = scan.scan(self._batches, self._keep, kinds=kinds)
        self._stats[tuple(sorted(kinds))] = result.stats
        return result


def _figures(dialect: Dialect, requests: pd.DataFrame, scans: _Scans) -> DialectFigures:
    ok = counted(requests)
    ids = ok["request_id"]
    pooled = dialect.itl in (Itl.POOLED, Itl.POOLED_TOKENS)
    with_gaps = scans.with_gaps(dialect.stream) if pooled else None
    stream = with_gaps.stats if with_gaps is not None else scans.stats(dialect.stream)
    first = ids.map(stream["first_token_s"]).astype("float64").to_numpy()
    last = ids.map(stream["last_token_s"]).astype("float64").to_numpy()
    sent = ok["sent_s"].to_numpy(dtype="float64")
    end = _end(dialect, ok, last, scans)
    chunk_tokens = ids.map(scans.stats(dialect.counted_kinds)["chunk_tokens"]).astype("float64")
    usage = ok["usage_completion_tokens"].astype("float64")
    tokens = usage.fillna(chunk_tokens).fillna(0.0).to_numpy()
    ttft, e2e = (first - sent) * 1e3, (end - sent) * 1e3
    many = np.where(tokens > 1, tokens - 1, np.nan)
    if with_gaps is not None:
        itl = distribution(_pooled(dialect, with_gaps, ok, first), overwrite=True)
    elif dialect.itl is Itl.DECODE_MEAN:
        itl = distribution((last - first) * 1e3 / many)
    elif dialect.itl is Itl.LATENCY_MEAN:
        itl = distribution((e2e - ttft) / many)
    else:  # WITH_TTFT
        itl = distribution((last - sent) * 1e3 / np.where(tokens > 0, tokens, np.nan))
    tpot = _tpot(dialect.tpot, ttft, e2e, first, last, sent, tokens)
    return DialectFigures(dialect, distribution(ttft), itl, tpot, distribution(e2e),
                          _throughput(requests, float(np.nansum(tokens))), len(ok))


def _end(dialect: Dialect, ok: pd.DataFrame, last: np.ndarray, scans: _Scans) -> np.ndarray:
    if dialect.end is End.LAST_TOKEN:
        return last
    if dialect.end is End.BODY_END:
        return ok["end_s"].to_numpy(dtype="float64")
    every = scans.stats(CHUNK_KINDS)["last_token_s"]
    return ok["request_id"].map(every).astype("float64").to_numpy()


def _pooled(dialect: Dialect, stream: scan.ScanResult, ok: pd.DataFrame, first: np.ndarray) -> np.ndarray:
    """The pooled gaps (ms) of the counted requests; per token, each chunk of k tokens adds
    k - 1 zero gaps (inference-perf gives every token of a chunk the chunk's time)."""
    gaps = stream.gaps.take(ok["request_id"].to_numpy(dtype=np.int64), consume=True)
    if dialect.itl is not Itl.POOLED_TOKENS:
        return gaps
    has = np.isfinite(first)
    tokens = ok["request_id"].map(stream.stats["chunk_tokens"]).fillna(0).to_numpy(dtype=np.int64)[has]
    zeros = int(tokens.sum()) - int(has.sum()) - gaps.size  # tokens - chunks, chunks = gaps + 1 each
    return np.concatenate([gaps, np.zeros(max(zeros, 0))])


def _tpot(kind: Tpot, ttft: np.ndarray, e2e: np.ndarray, first: np.ndarray, last: np.ndarray,
          sent: np.ndarray, tokens: np.ndarray) -> Distribution | None:
    many = np.where(tokens > 1, tokens - 1, np.nan)
    if kind is Tpot.E2E_DECODE:
        return distribution((e2e - ttft) / many)
    if kind is Tpot.STREAM_DECODE:
        return distribution((last - first) * 1e3 / many)
    if kind is Tpot.WITH_FIRST:
        return distribution((last - sent) * 1e3 / np.where(tokens > 0, tokens, np.nan))
    return None


def _throughput(requests: pd.DataFrame, tokens: float) -> float | None:
    """Output tokens over the run window: first measured send to last measured end."""
    rows = measured(requests)
    if rows.empty:
        return None
    window = float(rows["end_s"].max() - rows["sent_s"].min())
    return tokens / window if window > 0 else None

