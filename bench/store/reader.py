"""Reading a run directory's records: request scalars and chunk columns, from the parquet
files when they are complete, else from the journal (crash recovery); and the journal of a
run in progress, incrementally."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.dataset  # pyarrow.parquet imports it on first read: here, at start, not at a run's end
import pyarrow.parquet as pq

from bench.records import CHUNK_KINDS, NO_TOKENS, SCALAR_FIELDS, ChunkBatch
from bench.store.journal import journal_chunks, journal_rows
from bench.store.layout import (
    BATCH_RECORDS,
    CHUNK_SCHEMA,
    CHUNKS,
    JOURNAL,
    RAW_COLUMNS,
    RAW_REQUESTS,
    REQUEST_DTYPES,
)

__all__ = ["ChunkSource", "JournalReader", "chunk_source", "frame_batch", "read_chunks", "read_raw_requests"]

_READ_BATCH_ROWS = 1 << 20


def read_raw_requests(run_dir: Path, texts: bool = True) -> pd.DataFrame:
    """Scalar fields of every recorded request, sorted by request_id: raw_requests.parquet
    when it is complete, else the journal (the source of truth). `texts=False` leaves the
    answers' kept texts (`output_texts`, GiBs in a large run that kept them) unread: null."""
    try:
        names = pq.ParquetFile(run_dir / RAW_REQUESTS).schema_arrow.names
        frame = pq.read_table(run_dir / RAW_REQUESTS,
                              columns=[n for n in names if texts or n != "output_texts"]).to_pandas()
    except (OSError, pa.ArrowInvalid):
        return _raw_frame(journal_rows(run_dir))
    return _typed_raw(frame)


def _raw_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records([{k: row.get(k) for k in SCALAR_FIELDS} for row in rows],
                                      columns=list(SCALAR_FIELDS))
    frame["server_timings"] = [json.dumps(v) if v else None for v in frame["server_timings"]]
    return _typed_raw(frame)


def _typed_raw(frame: pd.DataFrame) -> pd.DataFrame:
    for name in set(REQUEST_DTYPES) - set(frame.columns):  # a column added after the run's version
        frame[name] = None
    frame = frame[[*RAW_COLUMNS, "server_timings"]]  # the parquet file's order, whichever was read
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


@dataclass(frozen=True)
class ChunkSource:
    """A run's stored chunks, read batch by batch: chunks.parquet when it is complete,
    else the journal (crash recovery). `rows` is known for parquet only."""

    run_dir: Path
    rows: int | None

    def batches(self) -> Iterator[ChunkBatch]:
        """The chunks in stored order, about a million rows a batch. From parquet, the next
        batch is read in a thread while the caller works on this one (reading and decoding
        128M chunks took 2.5 s of finalize's 33 s; the thread holds one batch more)."""
        if self.rows is None:
            yield from _journal_chunk_batches(self.run_dir)
            return
        handle = pq.ParquetFile(self.run_dir / CHUNKS)
        groups = handle.num_row_groups
        per_read = max(1, _READ_BATCH_ROWS * groups // max(self.rows, 1))
        # whole row groups: iter_batches kept ~1 GB of anonymous memory after reading 1 GB
        spans = [range(first, min(first + per_read, groups)) for first in range(0, groups, per_read)]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-chunk-read") as pool:
            ahead: Future[ChunkBatch] | None = pool.submit(_read_groups, handle, spans[0]) if spans else None
            for following in [*spans[1:], None]:
                assert ahead is not None
                batch = ahead.result()
                ahead = pool.submit(_read_groups, handle, following) if following is not None else None
                try:
                    yield batch
                except GeneratorExit:
                    if ahead is not None:
                        ahead.cancel()
                    raise


def _read_groups(handle: pq.ParquetFile, groups: range) -> ChunkBatch:
    table = handle.read_row_groups(groups, columns=CHUNK_SCHEMA.names)
    return ChunkBatch(
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
            "kind": pd.Categorical.from_codes(self.kind[:n], categories=pd.Index(CHUNK_KINDS)),
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
    for row in journal_rows(run_dir):
        parts.append((row["request_id"], *journal_chunks(row)))
        if len(parts) >= BATCH_RECORDS:
            yield _join_records(parts)
            parts = []
    if parts:
        yield _join_records(parts)


def _join_records(parts: list[tuple[np.ndarray, ...]]) -> ChunkBatch:
    ids = np.array([p[0] for p in parts], dtype=np.int64)
    lengths = np.array([p[1].size for p in parts], dtype=np.int64)
    columns = [np.concatenate([p[i] for p in parts]) for i in range(1, 5)]
    return ChunkBatch(np.repeat(ids, lengths), columns[0].astype(np.float64), columns[1].astype(np.int8),
                      columns[2].astype(np.int32), columns[3].astype(np.int32))
