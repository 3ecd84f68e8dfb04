"""The on-disk run format (versioned) and its raw reader/writer.

A run directory holds:
- `run.json`: manifest (schema version, resolved scenario without secrets, target, times,
  how the run ended). Written at start with `ended: "running"`, rewritten at the end.
- `requests.jsonl`: the journal, one raw record per line, flushed as requests finish, so a
  crash or `kill -9` loses at most the records being written. Chunk columns are base64 of
  their little-endian bytes (`t` float64, `kind` int8, `tokens` and `choice` int32), or a
  single number when every entry has that value (`"tokens": -1`, `"choice": 0`).
- `chunks.parquet`: one row per SSE event, or per choice of a multi-choice event (`request_id, t_s, kind, tokens, choice`), and
  `raw_requests.parquet`: the journal's scalar fields, one row per record; both written
  in row groups during the run and readable once closed. When either is missing or cut
  short (a killed run), readers rebuild it from the journal.
- `requests.parquet` and `summary.json`: written at the end from the raw data (by the
  finalize step, which owns the metric definitions).

This module knows nothing about metrics.
"""

from __future__ import annotations

import base64
import binascii
import json
import operator
import os
import sys
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from bench.errors import BenchInputError, RunFailed
from bench.records import (
    CHUNK_KINDS,
    CHUNKS_INDEX,
    NO_TOKENS,
    RECORD_FIELDS,
    SCALAR_FIELDS,
    ChunkColumns,
    RequestRecord,
)

SCHEMA_VERSION = 3
# Version 3 added chunk kinds (tool_call, function_call, refusal) after the old codes, so a
# version 2 run reads unchanged; its records keep the error kinds of their day (no_done).
READABLE_VERSIONS = (2, 3)
MANIFEST = "run.json"
JOURNAL = "requests.jsonl"
CHUNKS = "chunks.parquet"
RAW_REQUESTS = "raw_requests.parquet"
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
# Request rows per row group: 1,954 groups of 512 rows took 2 s to read at 1M requests; a
# 64k-row group took ~100 ms to write, long enough to fill the I/O queue at full speed.
_RAW_GROUP_ROWS = 1 << 14
_IO_QUEUE = 8  # batches at the I/O thread before `write` waits for one (~13 MB at 128 chunks)
_READ_BATCH_ROWS = 1 << 20
# Dictionary-encoding t_s (all distinct) tripled the write cost for nothing, and snappy
# saved 1 % of it (t_s is the bulk and does not compress); statistics serve row-group
# skipping, which no reader here does (measured with benchmarks/scale.py).
_CHUNK_OPTIONS: dict[str, Any] = {"use_dictionary": ["request_id", "kind", "tokens", "choice"],
                                  "write_statistics": False, "compression": "none"}
_RAW_OPTIONS: dict[str, Any] = {"write_statistics": False}

# Stable column types whatever the journal holds (all-null columns included).
REQUEST_DTYPES = {
    "request_id": "int64", "stage": "int64", "phase": "string", "variant": "string",
    "block": "int64", "conversation": "int64", "turn": "int64", "prompt_index": "int64", "scheduled_s": "float64", "submitted_s": "float64", "sent_s": "float64", "headers_s": "float64",
    "end_s": "float64", "status": "string", "error_kind": "string", "error_message": "string",
    "http_status": "Int64", "retry_after_s": "float64", "finish_reason": "string",
    "usage_prompt_tokens": "Int64", "usage_completion_tokens": "Int64", "server_request_id": "string",
    "max_tokens": "Int64", "n": "int64", "done_seen": "bool", "reconnected": "bool", "output_chars": "int64",
}
_ARROW_TYPES = {"int64": pa.int64(), "Int64": pa.int64(), "float64": pa.float64(), "string": pa.string(),
                "bool": pa.bool_()}
_RAW_COLUMNS = tuple(name for name in SCALAR_FIELDS if name != "server_timings")
if set(_RAW_COLUMNS) - set(REQUEST_DTYPES):  # raw_requests.parquet needs each column's type
    raise ImportError(f"RequestRecord fields without a column type in store.REQUEST_DTYPES: "
                      f"{sorted(set(_RAW_COLUMNS) - set(REQUEST_DTYPES))}")
_RAW_SCHEMA = pa.schema([(name, _ARROW_TYPES[REQUEST_DTYPES[name]]) for name in _RAW_COLUMNS]
                        + [("server_timings", pa.string())])
_SCALARS = operator.attrgetter(*SCALAR_FIELDS)
_REQUEST_ID = SCALAR_FIELDS.index("request_id")
_LITTLE_ENDIAN = sys.byteorder == "little"


class WorkloadInfo(BaseModel):
    """run.json `workload`: what the prompt source held and how the run drew from it."""

    model_config = ConfigDict(extra="forbid")

    source: str  # inline | file | synthetic | trace
    records: int | None = None  # records (or inline items) read; None: synthetic
    prompts: int | None = None  # usable prompts among them; None: synthetic, one made per draw
    skipped: int = 0  # records never sent: empty or whitespace-only text, no reply, unreadable
    skipped_reasons: dict[str, int] = {}  # by reason (bench.scenario.prompts.SKIP_REASONS)
    drawn: int | None = None  # prompts drawn in the run (one per block: variants share one)
    repeated: int | None = None  # draws of a prompt already drawn before in the run


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
    ended: str  # running | completed | saturated (load.stop_on_saturation) | interrupted | failed
    end_reason: str | None = None
    python: str
    platform: str
    host: str
    client: dict[str, Any] = {}
    server: dict[str, Any] = {}
    stages: list[dict[str, Any]] = []
    notes: list[str] = []
    workload: WorkloadInfo | None = None  # absent in runs stored before it was recorded


# --- writing ----------------------------------------------------------------------------


def journal_line(record: RequestRecord) -> bytes:
    """One journal line: orjson serialises the dataclass (keys are the field names) and
    calls `_encode_array` for the chunk columns. About 5 us for 128 chunks, a third of it
    base64 of the times; the float lists of schema version 1 cost twice that and 2x the bytes."""
    return _journal_line(record)


def _journal_line(value: Any) -> bytes:
    """A RequestRecord, or a dict of its fields by name: the same JSON either way."""
    return orjson.dumps(value, default=_encode_array) + b"\n"


def _encode_array(value: Any) -> Any:
    if not isinstance(value, array):
        raise TypeError(f"cannot journal a {type(value).__name__}")
    if value.typecode == "i":
        # tokens/choice are NO_TOKENS / 0 throughout nearly every record: one number, not
        # 4 bytes each (compared with a cached array: 6x faster than array.count)
        for fill, same in _fills(len(value)):
            if value == same:
                return fill
    if not _LITTLE_ENDIAN:
        value = array(value.typecode, value)
        value.byteswap()
    return binascii.b2a_base64(value, newline=False).decode("ascii")


_FILLS: dict[int, tuple[tuple[int, array], ...]] = {}
_FILLS_CACHED = 2048  # chunk counts up to this: 16 MiB of cached arrays at most


def _fills(n: int) -> tuple[tuple[int, array], ...]:
    fills = _FILLS.get(n)
    if fills is None:
        fills = tuple((v, array("i", [v]) * n) for v in (NO_TOKENS, 0)) if n else ()
        if n <= _FILLS_CACHED:
            _FILLS[n] = fills
    return fills


class _PendingBatch:
    """Columns of the records not yet in the parquet files (at most one batch): the records
    themselves are not kept."""

    def __init__(self) -> None:
        self.scalars: list[tuple[Any, ...]] = []
        self.lengths = array("q")
        self.t = bytearray()
        self.kind = bytearray()
        self.tokens = bytearray()
        self.choice = bytearray()

    def add(self, scalars: tuple[Any, ...], chunks: ChunkColumns) -> None:
        self.scalars.append(scalars)
        self.lengths.append(len(chunks.t))
        self.t += chunks.t
        self.kind += chunks.kind
        self.tokens += chunks.tokens
        self.choice += chunks.choice

    def chunk_table(self) -> pa.Table:
        ids = np.array([row[_REQUEST_ID] for row in self.scalars], dtype=np.int64)
        lengths = np.frombuffer(self.lengths, dtype=np.int64)
        return _chunk_columns(np.repeat(ids, lengths), np.frombuffer(self.t, dtype=np.float64),
                              np.frombuffer(self.kind, dtype=np.int8), np.frombuffer(self.tokens, dtype=np.intc),
                              np.frombuffer(self.choice, dtype=np.intc))

    def raw_table(self) -> pa.Table:
        columns = dict(zip(SCALAR_FIELDS, zip(*self.scalars, strict=True), strict=True))
        # as a JSON string: its keys are the server's, not ours
        columns["server_timings"] = tuple(json.dumps(v) if v else None for v in columns["server_timings"])
        return pa.Table.from_arrays([pa.array(columns[f.name], type=f.type) for f in _RAW_SCHEMA], schema=_RAW_SCHEMA)


class RunWriter:
    """Creates a run directory and appends records as they finish.

    `write` runs on the run's event loop once per finished request: it journals the record
    (one unbuffered write) and adds its columns to the pending batch; every _BATCH_RECORDS
    records the batch becomes Arrow tables here and is written to parquet by one I/O
    thread (pyarrow encodes and writes without the GIL), so the loop does not wait for it.
    At most _IO_QUEUE batches wait for the thread while the next fills: memory does not
    grow with the finished requests.
    """

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
        # Unbuffered: each line goes to the kernel in one write, so a SIGKILL loses nothing written.
        self._journal = open(run_dir / JOURNAL, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._pending = _PendingBatch()
        self._raw_tables: list[pa.Table] = []  # request rows waiting for a row group of their own
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-parquet")
        self._io_busy: deque[Future[None]] = deque()
        self._broken = False  # a parquet write failed: the files may lack records, readers must use the journal
        self.count = 0

    def write(self, record: RequestRecord) -> None:
        self._journal_write(journal_line(record))
        self._add(_SCALARS(record), record.chunks)

    def write_values(self, batch: list[tuple[Any, ...]]) -> None:
        """Records as `records.record_values(record)` tuples, a batch from a worker process:
        the same journal lines and columns as `write`, without rebuilding each dataclass,
        and the batch's lines in one write (they arrived together)."""
        self._journal_write(b"".join([_journal_line(dict(zip(RECORD_FIELDS, values))) for values in batch]))
        for values in batch:
            self._add(values[:CHUNKS_INDEX] + values[CHUNKS_INDEX + 1:], values[CHUNKS_INDEX])

    def _journal_write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self._journal.write(view):]
        except OSError as exc:
            raise RunFailed(f"{self.run_dir / JOURNAL}: cannot write records: {exc.strerror or exc}") from None

    def _add(self, scalars: tuple[Any, ...], chunks: ChunkColumns) -> None:
        self.count += 1
        self._pending.add(scalars, chunks)
        if len(self._pending.scalars) >= _BATCH_RECORDS:
            self._flush()

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
            self._flush(last=True)
            for name in (CHUNKS, RAW_REQUESTS):
                self._writer(name).close()
        except (OSError, pa.ArrowException) as exc:
            self._broken = True
            raise RunFailed(f"{self.run_dir}: cannot write parquet files: {exc}") from None
        except RunFailed:
            self._broken = True
            raise
        finally:
            self._io.shutdown(wait=True)
            if self._broken:
                self._discard_parquet()
            try:
                self._journal.close()
            except OSError:
                pass  # its failed write was reported by write(); the complete lines are kept

    def _flush(self, last: bool = False) -> None:
        pending, self._pending = self._pending, _PendingBatch()
        if self._broken:
            return
        self._wait_io(keep=_IO_QUEUE - 1)  # a failed write is reported here, at the latest _IO_QUEUE batches on
        tables: list[tuple[str, pa.Table]] = []
        try:
            if pending.scalars:
                tables.append((CHUNKS, pending.chunk_table()))
                self._raw_tables.append(pending.raw_table())
            if self._raw_tables and (last or sum(t.num_rows for t in self._raw_tables) >= _RAW_GROUP_ROWS):
                tables.append((RAW_REQUESTS, pa.concat_tables(self._raw_tables)))
                self._raw_tables = []
        except pa.ArrowException as exc:
            self._broken = True
            raise RunFailed(f"{self.run_dir}: cannot convert records for parquet: {exc}") from None
        if tables:
            self._io_busy.append(self._io.submit(self._write_tables, tables))
        if last:
            self._wait_io(keep=0)

    def _write_tables(self, tables: list[tuple[str, pa.Table]]) -> None:
        """On the I/O thread."""
        for name, table in tables:
            try:
                self._writer(name).write_table(table)
            except (OSError, pa.ArrowException) as exc:
                raise RunFailed(f"{self.run_dir / name}: cannot write records: {exc}") from None

    def _wait_io(self, keep: int) -> None:
        """Collect finished writes, and wait until at most `keep` are left."""
        while self._io_busy and (len(self._io_busy) > keep or self._io_busy[0].done()):
            try:
                self._io_busy.popleft().result()
            except RunFailed:
                self._broken = True
                raise

    def _writer(self, name: str) -> pq.ParquetWriter:
        if name not in self._writers:
            schema, options = (_CHUNK_SCHEMA, _CHUNK_OPTIONS) if name == CHUNKS else (_RAW_SCHEMA, _RAW_OPTIONS)
            self._writers[name] = pq.ParquetWriter(self.run_dir / name, schema, **options)
        return self._writers[name]

    def _discard_parquet(self) -> None:
        """A failed write can leave a row group out of a file that still closes cleanly:
        remove the files so that readers rebuild everything from the journal."""
        for name, writer in self._writers.items():
            try:
                writer.close()
            except (OSError, pa.ArrowException):
                pass
            (self.run_dir / name).unlink(missing_ok=True)


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
    if version not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise BenchInputError(f"{path}: schema_version {version!r} is not supported (this bench reads {readable})")
    return Manifest.model_validate(data)


def read_raw_requests(run_dir: Path) -> pd.DataFrame:
    """Scalar fields of every recorded request, sorted by request_id: raw_requests.parquet
    when it is complete, else the journal (the source of truth)."""
    try:
        frame = pq.read_table(run_dir / RAW_REQUESTS).to_pandas()
    except (OSError, pa.ArrowInvalid):
        return _raw_frame(_journal_rows(run_dir))
    return _typed_raw(frame)


def _raw_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records([{k: row.get(k) for k in SCALAR_FIELDS} for row in rows],
                                      columns=list(SCALAR_FIELDS))
    frame["server_timings"] = [json.dumps(v) if v else None for v in frame["server_timings"]]
    return _typed_raw(frame)


def _typed_raw(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({**REQUEST_DTYPES, "server_timings": "string"})
    return frame.sort_values("request_id", kind="stable", ignore_index=True)


class JournalReader:
    """The journal of a run in progress, read incrementally: each `read` returns the
    records (scalar fields, chunks) journalled since the previous one, so a caller judging
    a run stage by stage (the sweep) does not re-read every earlier stage."""

    def __init__(self, run_dir: Path) -> None:
        self._path = run_dir / JOURNAL
        self._offset = 0

    def read(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        with open(self._path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        complete = data.rfind(b"\n") + 1  # a line being written now is read next time
        self._offset += complete
        rows = [orjson.loads(line) for line in data[:complete].splitlines()]
        batches = [_join_records([(row["request_id"], *journal_chunks(row)) for row in rows])] if rows else []
        return _raw_frame(rows), _compact_frame(batches)


class ChunkBatch(NamedTuple):
    """Raw chunk columns of some records, each record's events contiguous and in order."""

    request_id: np.ndarray  # int64
    t_s: np.ndarray  # float64
    kind: np.ndarray  # int8, index into CHUNK_KINDS
    tokens: np.ndarray  # int32, NO_TOKENS where the server did not say
    choice: np.ndarray  # int32


@dataclass(frozen=True)
class ChunkSource:
    """A run's stored chunks, read batch by batch: chunks.parquet when it is complete,
    else the journal (crash recovery). `rows` is known for parquet only."""

    run_dir: Path
    rows: int | None

    def batches(self) -> Iterator[ChunkBatch]:
        if self.rows is None:
            yield from _journal_chunk_batches(self.run_dir)
            return
        handle = pq.ParquetFile(self.run_dir / CHUNKS)
        groups = handle.num_row_groups
        per_read = max(1, _READ_BATCH_ROWS * groups // max(self.rows, 1))
        # whole row groups: iter_batches kept ~1 GB of anonymous memory after reading 1 GB
        for first in range(0, groups, per_read):
            table = handle.read_row_groups(range(first, min(first + per_read, groups)), columns=_CHUNK_SCHEMA.names)
            yield ChunkBatch(
                table.column("request_id").to_numpy(),
                table.column("t_s").to_numpy(),
                np.concatenate([_kind_codes(chunk) for chunk in table.column("kind").chunks] or [np.empty(0, np.int8)]),
                table.column("tokens").fill_null(NO_TOKENS).to_numpy(),
                table.column("choice").to_numpy(),
            )


def chunk_source(run_dir: Path) -> ChunkSource:
    try:
        rows = pq.ParquetFile(run_dir / CHUNKS).metadata.num_rows
    except (OSError, pa.ArrowInvalid):
        rows = None
    return ChunkSource(run_dir, rows)


def read_chunks(run_dir: Path) -> pd.DataFrame:
    """All chunks as one frame in compact types: request_id int32 when it fits, t_s
    float64, kind categorical (CHUNK_KINDS), tokens Int32 (NA: unknown), choice int8 when
    it fits. 19 bytes a chunk (2.3 GiB at 1M x 128), filled batch by batch: building it
    from int64 columns first peaked at 4.4 GiB."""
    source = chunk_source(run_dir)
    return _compact_frame(source.batches(), source.rows)


def _compact_frame(batches: Iterable[ChunkBatch], rows: int | None = None) -> pd.DataFrame:
    """`batches` in read_chunks' types; `rows` is their total when known (parquet)."""
    if rows is None:  # the journal: its length is known once read
        batches = list(batches)
        rows = sum(batch.request_id.size for batch in batches)
    columns = _CompactChunks(rows)
    for batch in batches:
        columns.add(batch)
    return columns.frame()


class _CompactChunks:
    """read_chunks' columns, allocated once; an integer column is widened (copied) only
    when a batch holds a value it cannot."""

    def __init__(self, rows: int) -> None:
        self.ids = np.empty(rows, np.int32)
        self.t = np.empty(rows, np.float64)
        self.kind = np.empty(rows, np.int8)
        self.tokens = np.empty(rows, np.int32)
        self.unknown = np.empty(rows, bool)
        self.choice = np.empty(rows, np.int8)
        self.filled = 0

    def add(self, batch: ChunkBatch) -> None:
        part = slice(self.filled, self.filled + batch.request_id.size)
        self.ids = _wide_enough(self.ids, batch.request_id)
        self.choice = _wide_enough(self.choice, batch.choice)
        self.ids[part] = batch.request_id
        self.t[part] = batch.t_s
        self.kind[part] = batch.kind
        self.tokens[part] = batch.tokens
        np.equal(batch.tokens, NO_TOKENS, out=self.unknown[part])
        self.choice[part] = batch.choice
        self.filled = part.stop

    def frame(self) -> pd.DataFrame:
        n = self.filled
        return pd.DataFrame({
            "request_id": self.ids[:n],
            "t_s": self.t[:n],
            "kind": pd.Categorical.from_codes(self.kind[:n], categories=list(CHUNK_KINDS)),
            "tokens": pd.arrays.IntegerArray(self.tokens[:n], self.unknown[:n]),
            "choice": self.choice[:n],
        }, copy=False)


def _wide_enough(column: np.ndarray, values: np.ndarray) -> np.ndarray:
    if values.size == 0:
        return column
    low, high = int(values.min()), int(values.max())
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if info.bits >= column.dtype.itemsize * 8 and info.min <= low and high <= info.max:
            return column if dtype == column.dtype else column.astype(dtype)
    raise ValueError(f"chunk column values out of range: {low}..{high}")


def frame_batch(chunks: pd.DataFrame) -> ChunkBatch:
    """A chunk frame (as `read_chunks` returns, or built by hand) as one batch."""
    kind = pd.Categorical(chunks["kind"], categories=list(CHUNK_KINDS)).codes
    return ChunkBatch(
        chunks["request_id"].to_numpy(dtype=np.int64),
        chunks["t_s"].to_numpy(dtype=np.float64),
        np.asarray(kind, dtype=np.int8),
        chunks["tokens"].astype("Int64").fillna(NO_TOKENS).to_numpy(dtype=np.int32),
        chunks["choice"].to_numpy(dtype=np.int32),
    )


def _kind_codes(column: pa.Array) -> np.ndarray:
    if not isinstance(column, pa.DictionaryArray):
        column = column.dictionary_encode()
    codes = column.indices.to_numpy(zero_copy_only=False).astype(np.int8, copy=False)
    names = column.dictionary.to_pylist()
    if names == list(CHUNK_KINDS)[: len(names)]:
        return codes
    lookup = np.array([CHUNK_KINDS.index(n) if n in CHUNK_KINDS else CHUNK_KINDS.index("other") for n in names],
                      dtype=np.int8)
    return lookup[codes]


def _journal_chunk_batches(run_dir: Path) -> Iterator[ChunkBatch]:
    parts: list[tuple[np.ndarray, ...]] = []
    for row in _journal_rows(run_dir):
        parts.append((row["request_id"], *journal_chunks(row)))
        if len(parts) >= _BATCH_RECORDS:
            yield _join_records(parts)
            parts = []
    if parts:
        yield _join_records(parts)


def journal_chunks(row: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """A decoded journal line's chunk columns: (t, kind, tokens, choice)."""
    chunks = row["chunks"]
    t = _decode_column(chunks["t"], "<f8", 0)
    n = t.size
    return (t, _decode_column(chunks["kind"], "i1", n), _decode_column(chunks["tokens"], "<i4", n),
            _decode_column(chunks["choice"], "<i4", n))


def _decode_column(value: str | int, dtype: str, n: int) -> np.ndarray:
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype=dtype)
    return np.full(n, value, dtype=dtype)


def _join_records(parts: list[tuple[np.ndarray, ...]]) -> ChunkBatch:
    ids = np.array([p[0] for p in parts], dtype=np.int64)
    lengths = np.array([p[1].size for p in parts], dtype=np.int64)
    columns = [np.concatenate([p[i] for p in parts]) for i in range(1, 5)]
    return ChunkBatch(np.repeat(ids, lengths), columns[0].astype(np.float64), columns[1].astype(np.int8),
                      columns[2].astype(np.int32), columns[3].astype(np.int32))


def _journal_rows(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Journal records, in the order they finished."""
    path = run_dir / JOURNAL
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise BenchInputError(f"{run_dir}: no {JOURNAL}; nothing was recorded") from None
    with handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break  # the last line of a killed run may be cut short
            yield orjson.loads(line)
