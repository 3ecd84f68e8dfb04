"""The on-disk run format (versioned) and its raw reader/writer.

A run directory holds:
- `run.json`: manifest (schema version, resolved scenario without secrets, target, times,
  how the run ended). Written at start with `ended: "running"`, rewritten at the end.
- `requests.jsonl`: the journal, one raw record per line, flushed as requests finish, so a
  crash or `kill -9` loses at most the records being written.
- `chunks.parquet`: one row per SSE event (`request_id, t_s, kind, tokens, choice`),
  written in row groups during the run.
- `requests.parquet` and `summary.json`: written at the end from the raw data (by the
  finalize step, which owns the metric definitions).

This module knows nothing about metrics.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from bench.errors import BenchInputError, RunFailed
from bench.records import CHUNK_KINDS, NO_TOKENS, SCALAR_FIELDS, RequestRecord

SCHEMA_VERSION = 1
MANIFEST = "run.json"
JOURNAL = "requests.jsonl"
CHUNKS = "chunks.parquet"
REQUESTS = "requests.parquet"
SUMMARY = "summary.json"
SERVER_METRICS = "server_metrics.parquet"
SERVER_LOG = "server.log"

_CHUNK_SCHEMA = pa.schema([
    ("request_id", pa.int64()),
    ("t_s", pa.float64()),
    ("kind", pa.dictionary(pa.int8(), pa.string())),
    ("tokens", pa.int32()),
    ("choice", pa.int32()),
])
_KIND_DICT = pa.array(CHUNK_KINDS, type=pa.string())
_BATCH_RECORDS = 512

# Stable column types whatever the journal holds (all-null columns included).
REQUEST_DTYPES = {
    "request_id": "int64", "stage": "int64", "phase": "string", "variant": "string",
    "block": "int64", "conversation": "int64", "turn": "int64", "prompt_index": "int64", "scheduled_s": "float64", "submitted_s": "float64", "sent_s": "float64", "headers_s": "float64",
    "end_s": "float64", "status": "string", "error_kind": "string", "error_message": "string",
    "http_status": "Int64", "retry_after_s": "float64", "finish_reason": "string",
    "usage_prompt_tokens": "Int64", "usage_completion_tokens": "Int64", "server_request_id": "string",
    "max_tokens": "Int64", "n": "int64", "done_seen": "bool", "reconnected": "bool", "output_chars": "int64",
}


class Manifest(BaseModel):
    """run.json. Strict so that a future format is refused loudly, not misread."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int
    bench_version: str
    name: str
    scenario: dict[str, Any]
    scenario_path: str | None = None
    target: dict[str, Any]
    model: str | None
    seed: int
    t0_perf_counter: float
    started_at: str
    ended_at: str | None = None
    ended: str  # running | completed | interrupted | failed
    end_reason: str | None = None
    python: str
    platform: str
    host: str
    client: dict[str, Any] = {}
    server: dict[str, Any] = {}
    stages: list[dict[str, Any]] = []
    notes: list[str] = []


class RunWriter:
    """Creates a run directory and appends records as they finish."""

    def __init__(self, run_dir: Path, manifest: Manifest) -> None:
        self.run_dir = run_dir
        self.manifest = manifest
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise BenchInputError(f"{run_dir}: run directory already exists; refusing to overwrite it") from None
        except OSError as exc:
            raise BenchInputError(f"{run_dir}: cannot create run directory: {exc.strerror or exc}") from None
        self.write_manifest()
        self._journal = open(run_dir / JOURNAL, "ab")  # noqa: SIM115 - closed in close()
        self._chunk_writer: pq.ParquetWriter | None = None
        self._pending: list[RequestRecord] = []
        self.count = 0

    def write(self, record: RequestRecord) -> None:
        line = orjson.dumps(record.to_json_dict(), option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        try:
            self._journal.write(line)
            self._journal.flush()
        except OSError as exc:
            raise RunFailed(f"{self.run_dir / JOURNAL}: cannot write records: {exc.strerror or exc}") from None
        self.count += 1
        self._pending.append(record)
        if len(self._pending) >= _BATCH_RECORDS:
            self._flush_chunks()

    def write_manifest(self) -> None:
        path = self.run_dir / MANIFEST
        tmp = path.with_suffix(".json.tmp")
        try:
            tmp.write_text(self.manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise RunFailed(f"{path}: cannot write manifest: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Flush everything; safe to call more than once."""
        if self._journal.closed:
            return
        try:
            self._flush_chunks()
            if self._chunk_writer is None:
                self._chunk_writer = pq.ParquetWriter(self.run_dir / CHUNKS, _CHUNK_SCHEMA)
            self._chunk_writer.close()
        finally:
            try:
                self._journal.close()
            except OSError:
                pass  # its failed flush was reported by write(); the complete lines are kept

    def _flush_chunks(self) -> None:
        if not self._pending:
            return
        table = chunk_table(self._pending)
        self._pending = []
        try:
            if self._chunk_writer is None:
                self._chunk_writer = pq.ParquetWriter(self.run_dir / CHUNKS, _CHUNK_SCHEMA)
            self._chunk_writer.write_table(table)
        except OSError as exc:
            raise RunFailed(f"{self.run_dir / CHUNKS}: cannot write chunks: {exc.strerror or exc}") from None


def chunk_table(records: list[RequestRecord]) -> pa.Table:
    lengths = np.fromiter((len(r.chunks) for r in records), dtype=np.int64, count=len(records))
    ids = np.repeat(np.fromiter((r.request_id for r in records), dtype=np.int64, count=len(records)), lengths)
    return _chunk_columns(
        ids,
        _concat([r.chunks.t for r in records], np.float64),
        _concat([r.chunks.kind for r in records], np.int8),
        _concat([r.chunks.tokens for r in records], np.int32),
        _concat([r.chunks.choice for r in records], np.int32),
    )


def _concat(arrays: list[Any], dtype: Any) -> np.ndarray:
    parts = [np.frombuffer(a, dtype=dtype) for a in arrays if len(a)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def _chunk_columns(ids: Any, ts: Any, kinds: Any, tokens: Any, choices: Any) -> pa.Table:
    tokens = np.asarray(tokens, dtype=np.int32)
    token_arr = pa.array(tokens, pa.int32(), mask=tokens == NO_TOKENS)
    kind_arr = pa.DictionaryArray.from_arrays(pa.array(np.asarray(kinds, dtype=np.int8), pa.int8()), _KIND_DICT)
    return pa.Table.from_arrays(
        [pa.array(np.asarray(ids, dtype=np.int64), pa.int64()), pa.array(np.asarray(ts, dtype=np.float64), pa.float64()),
         kind_arr, token_arr, pa.array(np.asarray(choices, dtype=np.int32), pa.int32())],
        schema=_CHUNK_SCHEMA,
    )


# --- reading ----------------------------------------------------------------------------


def read_manifest(run_dir: Path) -> Manifest:
    path = run_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchInputError(f"{run_dir}: not a run directory (no {MANIFEST})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchInputError(f"{path}: cannot read manifest: {exc}") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise BenchInputError(f"{path}: schema_version {version!r} is not supported (this bench reads {SCHEMA_VERSION})")
    return Manifest.model_validate(data)


def read_raw_requests(run_dir: Path) -> pd.DataFrame:
    """Scalar fields of every journalled record (the journal is the source of truth)."""
    rows = list(_journal_rows(run_dir, scalars_only=True))
    columns = [k for k in SCALAR_FIELDS if k != "server_timings"]
    frame = pd.DataFrame.from_records([{k: row.get(k) for k in columns} for row in rows], columns=columns)
    frame = frame.astype(REQUEST_DTYPES)
    order = frame["request_id"].argsort(kind="stable").to_numpy()
    rows = [rows[i] for i in order]
    frame = frame.iloc[order].reset_index(drop=True)
    frame["server_timings"] = pd.Series(
        [json.dumps(row["server_timings"]) if row.get("server_timings") else None for row in rows],
        dtype="string", index=frame.index,
    )
    return frame


def read_chunks(run_dir: Path) -> pd.DataFrame:
    """chunks.parquet when it is complete, else rebuilt from the journal (crash recovery)."""
    path = run_dir / CHUNKS
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid):
        table = _chunks_from_journal(run_dir)
    frame = table.to_pandas()
    frame["kind"] = frame["kind"].astype(pd.CategoricalDtype(list(CHUNK_KINDS)))
    frame["tokens"] = frame["tokens"].astype("Int32")
    return frame


def _chunks_from_journal(run_dir: Path) -> pa.Table:
    ids: list[int] = []
    ts: list[float] = []
    kinds: list[int] = []
    tokens: list[int] = []
    choices: list[int] = []
    for row in _journal_rows(run_dir):
        n = len(row["chunk_t"])
        ids.extend([row["request_id"]] * n)
        ts.extend(row["chunk_t"])
        kinds.extend(row["chunk_kind"])
        tokens.extend(row["chunk_tokens"])
        choices.extend(row["chunk_choice"])
    return _chunk_columns(ids, ts, kinds, tokens, choices)


_CHUNK_KEY = b',"chunk_t":'  # records put their chunk arrays last (RequestRecord.to_json_dict)


def _journal_rows(run_dir: Path, scalars_only: bool = False) -> Any:
    """Journal records; `scalars_only` cuts each line before its chunk arrays, so reading
    the request columns does not build a Python float per chunk (chunks.parquet has them)."""
    path = run_dir / JOURNAL
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise BenchInputError(f"{run_dir}: no {JOURNAL}; nothing was recorded") from None
    with handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break  # the last line of a killed run may be cut short
            if scalars_only:
                cut = line.find(_CHUNK_KEY)
                if cut > 0:
                    yield orjson.loads(line[:cut] + b"}")
                    continue
            yield orjson.loads(line)
