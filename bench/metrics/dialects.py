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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd

from bench.metrics import scan
from bench.metrics.catalogue import counted, counted_ids, measured
from bench.metrics.distribution import Distribution, distribution
from bench.records import CHUNK_KINDS, OUTPUT_KINDS, ChunkBatch

__all__ = ["DIALECTS", "Dialect", "DialectFigures", "DialectScans", "End", "Itl", "Tpot", "by_name",
           "definitions_key", "dialect_figures", "names"]


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

    def to_json(self) -> dict[str, Any]:
        return {"dialect": self.dialect.name, "ttft": self.ttft.to_json(), "itl": self.itl.to_json(),
                "tpot": self.tpot.to_json() if self.tpot is not None else None, "e2e": self.e2e.to_json(),
                "output_tok_s": self.output_tokens_per_s, "requests": self.requests}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DialectFigures:
        """From `to_json`; KeyError for a dialect this bench does not know, ValueError on bad values."""
        tpot = data["tpot"]
        return cls(by_name(data["dialect"]), Distribution.from_json(data["ttft"]), Distribution.from_json(data["itl"]),
                   Distribution.from_json(tpot) if tpot is not None else None, Distribution.from_json(data["e2e"]),
                   data["output_tok_s"], int(data["requests"]))


def definitions_key(dialects: Iterable[Dialect] = DIALECTS) -> str:
    """The definitions the dialects' figures follow, as text: figures stored under another
    key (another bench's definitions) are computed again."""
    return repr([(d.name, sorted(d.stream), d.itl.name, d.tpot.name, d.end.name, sorted(d.counted_kinds))
                 for d in dialects])


Batches = Callable[[], Iterable[ChunkBatch]]


def dialect_figures(requests: pd.DataFrame, batches: Batches,
                    dialects: Iterable[Dialect] = DIALECTS) -> list[DialectFigures]:
    """Each dialect's figures for a run: `requests` is the run's per-request frame
    (`Run.requests`), `batches` its chunk batches (`Run.chunk_batches()`). One read of the
    chunks for every dialect, or two when a later batch holds kinds the first did not
    (`DialectScans`)."""
    scans = DialectScans(requests, dialects)
    scan.read_once(batches(), [scans])
    return scans.figures(batches)


class DialectScans:
    """The scans the dialects need, fed batch by batch (`scan.read_once`, beside other
    consumers of the same read), then `figures`.

    Kind sets that select the same chunks of this run share one scan: in a run without
    reasoning or tool calls, bench's output kinds, `content` and `content` + `reasoning`
    are one set. The kinds the run holds are taken from its first batch; a set that a later
    batch's kinds tell apart from its share is scanned again on its own, so the figures are
    always each definition's own. `token_scan`: the caller's scan of the counted requests'
    gaps by `scan.TOKEN_KINDS` (fed by the caller), used for the sets that select its chunks.
    """

    def __init__(self, requests: pd.DataFrame, dialects: Iterable[Dialect] = DIALECTS, rows: int | None = None,
                 token_scan: scan.Scan | None = None) -> None:
        self._requests = requests
        self._dialects = tuple(dialects)
        self._keep = counted_ids(requests)
        self._rows = rows
        self._token_scan = token_scan
        self._first: frozenset[str] | None = None
        self._seen: set[str] = set()
        self._scans: dict[frozenset[str], scan.Scan] = {}
        self._results: dict[frozenset[str], scan.ScanResult] = {}
        self._own: dict[frozenset[str], scan.ScanResult] = {}
        self._itl: dict[int, tuple[np.ndarray, Distribution]] = {}

    def _needs(self) -> dict[frozenset[str], bool]:
        """Every kind set a dialect reads, and whether its gaps are needed."""
        needs: dict[frozenset[str], bool] = {}
        for d in self._dialects:
            stream = frozenset(d.stream)
            needs[stream] = needs.get(stream, False) or d.itl in (Itl.POOLED, Itl.POOLED_TOKENS)
            needs.setdefault(frozenset(d.counted_kinds), False)
            if d.end is End.LAST_EVENT:
                needs.setdefault(frozenset(CHUNK_KINDS), False)
        return needs

    def feed(self, batch: ChunkBatch) -> None:
        present = scan.kinds_present(batch)
        if self._first is None:
            self._first = present
            self._start(present)
        self._seen |= present
        for scanner in self._scans.values():
            if scanner is not self._token_scan:
                scanner.feed(batch)

    def _start(self, present: frozenset[str]) -> None:
        shared: dict[frozenset[str], bool] = {}
        for kinds, gaps in self._needs().items():
            shared[kinds & present] = shared.get(kinds & present, False) or gaps
        tokens = frozenset(scan.TOKEN_KINDS) & present
        for key, gaps in shared.items():
            if key == tokens and self._token_scan is not None:
                self._scans[key] = self._token_scan
            else:
                self._scans[key] = scan.Scan(self._keep if gaps else [], self._rows, kinds=key)

    def figures(self, batches: Batches, requests: pd.DataFrame | None = None) -> list[DialectFigures]:
        """Every dialect's figures. `batches` is read once more when a later batch broke up
        some share (every set so broken is scanned on its own in that read), or when no
        batch was fed, and for a run whose requests are not each in one place."""
        first, seen = self._first, self._seen
        tokens = frozenset(scan.TOKEN_KINDS)
        # The caller's token scan counts every TOKEN_KIND: the sets sharing it must select the same.
        tokens_apart = self._token_scan is not None and first is not None and tokens & seen != tokens & first
        broken = {kinds: gaps for kinds, gaps in self._needs().items()
                  if first is None or kinds & seen != kinds & first or (tokens_apart and kinds & first == tokens & first)}
        if broken:
            own = {kinds: scan.Scan(self._keep if gaps else [], self._rows, kinds=kinds) for kinds, gaps in broken.items()}
            scan.read_once(batches(), list(own.values()))
            self._own = {kinds: scanner.result(batches) for kinds, scanner in own.items()}
        if requests is not None:  # the derived requests, when the scans were fed with the raw ones
            self._requests = requests
        return [_figures(d, self._requests, self, batches) for d in self._dialects]

    def result(self, kinds: tuple[str, ...], batches: Batches) -> scan.ScanResult:
        """The scan of `kinds`: its own when its share broke up, else the shared one."""
        wanted = frozenset(kinds)
        if wanted in self._own:
            return self._own[wanted]
        assert self._first is not None  # else every set is broken up (`figures`)
        key = wanted & self._first
        if key not in self._results:
            self._results[key] = self._scans[key].result(batches)
        return self._results[key]

    def itl(self, dialect: Dialect, ok: pd.DataFrame, first: np.ndarray, batches: Batches) -> Distribution:
        """The dialect's pooled ITL distribution, once per set of gaps (dialects whose kinds
        select the same chunks pool the same gaps)."""
        gaps = _pooled(dialect, self.result(dialect.stream, batches), ok, first)
        if id(gaps) not in self._itl:  # the gaps are kept beside: an id names one array for the run
            self._itl[id(gaps)] = (gaps, distribution(gaps))
        return self._itl[id(gaps)][1]


def _figures(dialect: Dialect, requests: pd.DataFrame, scans: DialectScans, batches: Batches) -> DialectFigures:
    ok = counted(requests)
    ids = ok["request_id"]
    pooled = dialect.itl in (Itl.POOLED, Itl.POOLED_TOKENS)
    stream = scans.result(dialect.stream, batches).stats
    first = ids.map(stream["first_token_s"]).astype("float64").to_numpy()
    last = ids.map(stream["last_token_s"]).astype("float64").to_numpy()
    sent = ok["sent_s"].to_numpy(dtype="float64")
    end = _end(dialect, ok, last, scans, batches)
    chunk_tokens = ids.map(scans.result(dialect.counted_kinds, batches).stats["chunk_tokens"]).astype("float64")
    usage = ok["usage_completion_tokens"].astype("float64")
    tokens = usage.fillna(chunk_tokens).fillna(0.0).to_numpy()
    ttft, e2e = (first - sent) * 1e3, (end - sent) * 1e3
    many = np.where(tokens > 1, tokens - 1, np.nan)
    if pooled:
        itl = scans.itl(dialect, ok, first, batches)
    elif dialect.itl is Itl.DECODE_MEAN:
        itl = distribution((last - first) * 1e3 / many)
    elif dialect.itl is Itl.LATENCY_MEAN:
        itl = distribution((e2e - ttft) / many)
    else:  # WITH_TTFT
        itl = distribution((last - sent) * 1e3 / np.where(tokens > 0, tokens, np.nan))
    tpot = _tpot(dialect.tpot, ttft, e2e, first, last, sent, tokens)
    return DialectFigures(dialect, distribution(ttft), itl, tpot, distribution(e2e),
                          _throughput(requests, float(np.nansum(tokens))), len(ok))


def _end(dialect: Dialect, ok: pd.DataFrame, last: np.ndarray, scans: DialectScans, batches: Batches) -> np.ndarray:
    if dialect.end is End.LAST_TOKEN:
        return last
    if dialect.end is End.BODY_END:
        return ok["end_s"].to_numpy(dtype="float64")
    every = scans.result(CHUNK_KINDS, batches).stats["last_token_s"]
    return ok["request_id"].map(every).astype("float64").to_numpy()


def _pooled(dialect: Dialect, stream: scan.ScanResult, ok: pd.DataFrame, first: np.ndarray) -> np.ndarray:
    """The pooled gaps (ms) of the counted requests; per token, each chunk of k tokens adds
    k - 1 zero gaps (inference-perf gives every token of a chunk the chunk's time). The
    scan's own array when it holds exactly those gaps: shared, never reordered."""
    gaps = stream.gaps.take(ok["request_id"].to_numpy(dtype=np.int64), share=True)
    if dialect.itl is not Itl.POOLED_TOKENS:
        return gaps
    has = np.isfinite(first)
    tokens = ok["request_id"].map(stream.stats["chunk_tokens"]).fillna(0).to_numpy(dtype=np.int64)[has]
    zeros = int(tokens.sum()) - int(has.sum()) - gaps.size  # tokens - chunks, chunks = gaps + 1 each
    return np.concatenate([gaps, np.zeros(max(zeros, 0))]) if zeros > 0 else gaps


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

