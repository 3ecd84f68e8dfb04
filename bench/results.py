"""Loading stored runs (`bench.load_run`) and deriving their tables from the raw data.

Works on completed, interrupted and killed runs: when `requests.parquet` or
`chunks.parquet` is missing or cut short, everything is rebuilt from `requests.jsonl`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from bench import aggregate, metrics, store
from bench.errors import BenchInputError


@dataclass(frozen=True)
class Run:
    path: Path
    manifest: store.Manifest
    requests: pd.DataFrame  # one row per request: raw fields + derived metrics
    chunks: pd.DataFrame  # one row per SSE event
    summary: dict[str, Any]

    @property
    def itl(self) -> pd.DataFrame:
        ok = self.requests.loc[(self.requests["status"] == "ok") & (self.requests["phase"] == "measure"),
                               "request_id"]
        return metrics.itl_gaps(self.chunks[self.chunks["request_id"].isin(ok)])

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
    chunks = store.read_chunks(run_dir)
    requests = _read_requests(run_dir, chunks)
    summary = _read_summary(run_dir) or aggregate.summarize(requests, chunks, offered_rate(manifest),
                                                           manifest.scenario.get("slo"))
    return Run(run_dir, manifest, requests, chunks, summary)


def finalize_run(run_dir: Path, manifest: store.Manifest) -> Run:
    """Write requests.parquet and summary.json from the journal and chunks."""
    chunks = store.read_chunks(run_dir)
    requests = metrics.per_request(store.read_raw_requests(run_dir), chunks)
    summary = aggregate.summarize(requests, chunks, offered_rate(manifest), manifest.scenario.get("slo"))
    requests.to_parquet(run_dir / store.REQUESTS, index=False)
    (run_dir / store.SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return Run(run_dir, manifest, requests, chunks, summary)


def offered_rate(manifest: store.Manifest) -> float | None:
    load = manifest.scenario.get("load", {})
    rate = load.get("rate")
    return float(rate) if rate is not None else None


def _read_requests(run_dir: Path, chunks: pd.DataFrame) -> pd.DataFrame:
    path = run_dir / store.REQUESTS
    if path.exists():
        try:
            return pd.read_parquet(path)
        except (OSError, pa.ArrowInvalid):
            pass  # cut short by a crash: rebuilt from the journal below
    return metrics.per_request(store.read_raw_requests(run_dir), chunks)


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / store.SUMMARY
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        return None  # recomputed from the requests
