"""Loading stored runs (`bench.load_run`) and deriving their tables from the raw data.

Works on completed, interrupted and killed runs: when `requests.parquet`, `chunks.parquet`
or `raw_requests.parquet` is missing or cut short, everything is rebuilt from
`requests.jsonl`. Derived tables come from one streaming pass over the stored chunks
(`bench.metrics.scan`); the chunk frame itself is read only when `Run.chunks` is used.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd
import pyarrow as pa

from bench import store
from bench.analysis import saturation, stats
from bench.analysis import summary as aggregate
from bench.analysis.derived import Derived, read_derived, write_derived, write_gaps
from bench.analysis.steady_grid import steady_bin_s
from bench.analysis.summary_model import Summary
from bench.errors import BenchInputError
from bench.metrics import derive, scan
from bench.metrics.catalogue import ITL, counted_ids
from bench.metrics.dialects import DIALECTS, Dialect, DialectFigures, DialectScans
from bench.metrics.phases import PhaseScan
from bench.records import ChunkBatch

__all__ = ["Run", "derive_requests", "finalize_run", "is_open_loop", "load_run", "offered_rate",
           "saturation_verdicts"]

T = TypeVar("T")
_ITL_VALUES = "itl_values"


@dataclass(frozen=True)
class Run:
    path: Path
    manifest: store.Manifest
    requests: pd.DataFrame  # one row per request: raw fields + derived metrics
    chunk_frame: pd.DataFrame | None  # the chunks when already in memory; None: read on first use
    summary: Summary
    # Figures derived once per loaded run and shared by the tables, plots and comparisons that
    # need them (`memo`): a read of 128M chunks or a sort of 125M gaps takes seconds.
    _memo: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """compute() the first time `key` is asked of this run, the same value after."""
        if key not in self._memo:
            self._memo[key] = compute()
        return cast(T, self._memo[key])

    @cached_property
    def chunks(self) -> pd.DataFrame:
        """One row per SSE event (`store.read_chunks` types), read from the run directory on
        first use: 128M rows at 1M requests take seconds and GiBs nobody opening a run needs."""
        return self.chunk_frame if self.chunk_frame is not None else store.read_chunks(self.path)

    @cached_property
    def itl(self) -> pd.DataFrame:
        """One row per ITL gap of the counted requests (`scan.ItlGaps.frame` columns), from
        one streaming pass: through the whole chunk frame, 125M gaps took 35 s and 11 GiB."""
        frame = self._chunks_in_memory()
        if frame is not None:
            result = scan.scan_frame(frame, counted_ids(self.requests), times=True)
        else:
            result = _scan(self.path, self.requests, times=True)
        return result.gaps.frame()

    @cached_property
    def derived(self) -> Derived | None:
        """The figures finalize stored for later commands (`bench.analysis.derived`), None
        when there are none (then they come from the chunks) or the chunks were given."""
        return read_derived(self.path) if self.chunk_frame is None else None

    def itl_values(self) -> np.ndarray:
        """The ITL gaps (ms) of `itl` without their request or time (a third of the memory),
        in its order: from `itl` when it is read already, else as finalize stored them, else
        from one read of the chunks."""
        if "itl" in self.__dict__:
            return cast(np.ndarray, self.itl[ITL.key].to_numpy(dtype="float64"))
        if _ITL_VALUES not in self._memo and self.derived is not None:
            stored = self.derived.itl_values()
            if stored is not None:
                self._memo[_ITL_VALUES] = stored
        if _ITL_VALUES not in self._memo:
            self.read_once(itl_scan=self.new_itl_scan())
        return cast(np.ndarray, self._memo[_ITL_VALUES])

    def dialect_figures(self, dialects: Sequence[Dialect] = DIALECTS) -> list[DialectFigures] | None:
        """The dialects' figures as finalize stored them (None when it did not, for these)."""
        stored = self.derived.dialects if self.derived is not None else None
        if stored is None:
            return None
        by_name = {f.dialect.name: f for f in stored}
        if any(d.name not in by_name or by_name[d.name].dialect != d for d in dialects):
            return None
        return [by_name[d.name] for d in dialects]

    def itl_with_blocks(self, block_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(`itl_values`, each gap's block of run time: floor(`t_s` / block_s), int32): from
        `itl` when it is read already, else from a read of the chunks that keeps 4 bytes a
        gap for the times (not 8), whose values become `itl_values`."""
        if "itl" in self.__dict__:
            return self.itl_values(), np.floor(self.itl["t_s"].to_numpy(dtype="float64") / block_s).astype(np.int32)
        stored = self.derived.itl_blocks(block_s) if self.derived is not None else None
        if stored is not None:
            return self.itl_values(), stored
        frame = self._chunks_in_memory()
        keep = counted_ids(self.requests)
        if frame is not None:
            gaps = scan.scan_frame(frame, keep, block_s=block_s).gaps
        else:
            source = store.chunk_source(self.path)
            gaps = scan.scan(source.batches, keep, source.rows, block_s=block_s).gaps
        assert gaps.values is not None and gaps.blocks is not None
        values = cast(np.ndarray, self._memo.setdefault(_ITL_VALUES, gaps.values))
        return values, gaps.blocks

    def new_itl_scan(self) -> scan.Scan | None:
        """A scan of the counted requests' gaps whose gaps become `itl_values` once `read_once`
        has fed it; None when they are known already. Other consumers of the same read may
        share its results (a report's dialect tables count the same gaps)."""
        if _ITL_VALUES in self._memo or "itl" in self.__dict__:
            return None
        return scan.Scan(counted_ids(self.requests), self._chunk_rows())

    def token_rate(self, bin_s: float = 1.0) -> pd.DataFrame:
        """`scan.token_rate` of the run's chunks, streamed when they are not in memory."""
        self.read_once(token_rate_bins=(bin_s,))
        return cast(pd.DataFrame, self._memo[("token_rate", bin_s)])

    def read_once(self, token_rate_bins: Sequence[float] = (), consumers: Sequence[scan.Consumer] = (),
                  itl_scan: scan.Scan | None = None) -> None:
        """One read of the chunks for the token rates of `token_rate_bins` not known yet, the
        `consumers` (fed every batch) and `itl_scan` (`new_itl_scan`); nothing when none is asked."""
        stored = self.derived.token_rates if self.derived is not None else {}
        for bin_s in token_rate_bins:
            if bin_s in stored:
                self._memo.setdefault(("token_rate", bin_s), stored[bin_s])
        rates = [scan.TokenRate(b) for b in dict.fromkeys(token_rate_bins) if ("token_rate", b) not in self._memo]
        todo: list[scan.Consumer] = [*rates, *consumers, *([itl_scan] if itl_scan is not None else [])]
        if not todo:
            return
        batches = self.chunk_batches()
        scan.read_once(batches(), todo)
        for rate in rates:
            self._memo[("token_rate", rate.bin_s)] = rate.frame()
        if itl_scan is not None:
            self._memo[_ITL_VALUES] = itl_scan.result(batches).gaps.values

    def chunk_batches(self) -> Callable[[], Iterable[ChunkBatch]]:
        """A source of the run's chunk batches, a fresh iterator per call: the chunk frame
        when it is in memory, else the stored chunks read batch by batch."""
        frame = self._chunks_in_memory()
        if frame is not None:
            batch = store.frame_batch(frame)
            return lambda: [batch]
        return store.chunk_source(self.path).batches

    def _chunk_rows(self) -> int | None:
        """The number of stored chunks when known without reading them (a bound for buffers)."""
        frame = self._chunks_in_memory()
        return len(frame) if frame is not None else store.chunk_source(self.path).rows

    def _chunks_in_memory(self) -> pd.DataFrame | None:
        """The chunk frame when it was given or `chunks` has read it already, else None."""
        return self.__dict__.get("chunks", self.chunk_frame)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def server_metrics(self) -> pd.DataFrame | None:
        """The server's Prometheus series scraped during the run (t seconds from t0), if any."""
        path = self.path / store.SERVER_METRICS
        if not path.exists():
            return None
        try:
            return pd.read_parquet(path)
        except (OSError, pa.ArrowInvalid):
            return None


def load_run(path: str | os.PathLike[str]) -> Run:
    """Open a run directory (completed, interrupted or recovered after a crash)."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise BenchInputError(f"{run_dir}: run directory not found")
    manifest = store.read_manifest(run_dir)
    requests = _read_requests(run_dir)
    gaps = None
    if requests is None:
        requests, gaps = derive_requests(run_dir, store.read_raw_requests(run_dir, texts=False))
    summary = _read_summary(run_dir)
    if summary is None:
        summary = _summarize(requests, gaps or _scan(run_dir, requests).gaps, manifest)
    return Run(run_dir, manifest, requests, None, summary)


def finalize_run(run_dir: Path, manifest: store.Manifest) -> Run:
    """Write requests.parquet and summary.json from the raw records and chunks, and the
    figures later commands would read the chunks again for (`bench.analysis.derived`).

    One read of the chunks feeds every scan: the summary's, the token rates and the
    dialects' (a second read of 128M chunks took 10 s). The gaps' blocks are int16 while
    they fit, so that both gap arrays fit beside them (125M gaps: 3.7 GiB)."""
    raw = store.read_raw_requests(run_dir, texts=False)
    pa.default_memory_pool().release_unused()  # the read's buffers, kept by the allocator
    phase_scan = PhaseScan()
    source = store.chunk_source(run_dir)
    batches: Callable[[], Iterable[ChunkBatch]] = lambda: phase_scan.observe(source.batches())  # noqa: E731
    # int16 blocks (runs up to 2.2 hours); the scan widens them to int32 when one does not fit
    gap_scan = scan.Scan(counted_ids(raw), source.rows, block_s=stats.BLOCK_S, block_dtype=np.int16)
    steady_bin = steady_bin_s(raw)
    rates = [scan.TokenRate(b) for b in dict.fromkeys([1.0, *([steady_bin] if steady_bin is not None else [])])]
    dialect_scans = DialectScans(raw, rows=source.rows, token_scan=gap_scan)  # the counted ids are the raw ones
    scan.read_once(batches(), [gap_scan, *rates, dialect_scans])
    result = gap_scan.result(batches)
    requests = derive.per_request_from_stats(raw, result.stats, phase_scan.stats(), store.read_token_counts(run_dir))
    del raw
    gaps = result.gaps
    # The dialects only read the gaps: their figures (3 s at 125M gaps) are worked out while
    # the gaps are written (1.5 s of I/O, without the GIL).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-dialects") as pool:
        figures = pool.submit(dialect_scans.figures, source.batches, requests)
        write_gaps(run_dir, gaps)
        dialects = figures.result()
    gaps.blocks = None
    del dialect_scans, figures  # its gaps, before the summary's intervals need the memory
    pa.default_memory_pool().release_unused()  # the read's buffers, kept by the allocator
    write_derived(run_dir, int(gaps.values.size) if gaps.values is not None else 0, stats.BLOCK_S,
                  [(r.bin_s, r.frame()) for r in rates], dialects)
    summary = _summarize(requests, gaps, manifest)  # (it consumes the gaps)
    requests.to_parquet(run_dir / store.REQUESTS, index=False)
    (run_dir / store.SUMMARY).write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")
    return Run(run_dir, manifest, requests, None, summary)


def derive_requests(run_dir: Path, raw: pd.DataFrame) -> tuple[pd.DataFrame, scan.ItlGaps]:
    """Per-request metrics of the raw requests given, and the ITL gaps of those the
    summary counts, in one pass over the stored chunks (the reasoning phases read beside it)."""
    phase_scan = PhaseScan()
    result = _scan(run_dir, raw, phase_scan=phase_scan)
    return (derive.per_request_from_stats(raw, result.stats, phase_scan.stats(), store.read_token_counts(run_dir)),
            result.gaps)


def offered_rate(manifest: store.Manifest) -> float | None:
    load = manifest.scenario.get("load", {})
    rate = load.get("rate")
    return float(rate) if rate is not None else None


def is_open_loop(manifest: store.Manifest) -> bool:
    """Whether requests were sent on a schedule (a rate, a trace, an open-loop stage) rather
    than when a slot freed (closed loop)."""
    load = manifest.scenario.get("load", {}) or {}
    if load.get("rate") is not None or load.get("trace") is not None:
        return True
    return any(stage.get("kind") not in (None, "closed") for stage in manifest.stages)


def _scan(run_dir: Path, requests: pd.DataFrame, times: bool = False,
          phase_scan: PhaseScan | None = None) -> scan.ScanResult:
    """One pass over the stored chunks: token stats, and the gaps of the counted requests;
    `phase_scan` sees the same batches as they are read."""
    source = store.chunk_source(run_dir)
    batches: Callable[[], Iterable[ChunkBatch]] = source.batches
    if phase_scan is not None:
        batches = lambda: phase_scan.observe(source.batches())  # noqa: E731
    return scan.scan(batches, counted_ids(requests), source.rows, times=times)


def _summarize(requests: pd.DataFrame, gaps: scan.ItlGaps, manifest: store.Manifest) -> Summary:
    summary = aggregate.summarize_gaps(requests, gaps, offered_rate(manifest), manifest.scenario.get("slo"))
    # First key: what a reader of summary.json must know before any latency (bench.analysis.saturation).
    return dataclasses.replace(summary, saturation=saturation_verdicts(requests, manifest))


def saturation_verdicts(requests: pd.DataFrame, manifest: store.Manifest) -> list[dict[str, Any]]:
    """`summary.json` `saturation`: one entry per open-loop stage that saturated
    (`saturation.Verdict.as_dict`), [] when none did."""
    return [v.as_dict() for v in saturation.detect_run(requests, manifest.stages)]


def _read_requests(run_dir: Path) -> pd.DataFrame | None:
    path = run_dir / store.REQUESTS
    if path.exists():
        try:
            frame = pd.read_parquet(path)
        except (OSError, pa.ArrowInvalid):
            pass  # cut short by a crash: rebuilt from the journal
        else:
            pa.default_memory_pool().release_unused()  # the read's buffers: 0.5 GB at 1M requests
            return frame
    return None


def _read_summary(run_dir: Path) -> Summary | None:
    path = run_dir / store.SUMMARY
    try:
        return Summary.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None  # recomputed from the requests
