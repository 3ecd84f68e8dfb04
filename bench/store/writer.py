"""Writing a run directory: the journal line by line, the parquet files batch by batch on an
I/O thread, and the manifest (the layout is in bench.store.layout)."""

from __future__ import annotations

import json
import operator
from array import array
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.errors import BenchInputError, RunFailed
from bench.records import CHUNKS_INDEX, NO_TOKENS, RECORD_FIELDS, SCALAR_FIELDS, ChunkColumns, RequestRecord
from bench.store.journal import journal_line
from bench.store.layout import (
    BATCH_RECORDS,
    CHUNK_SCHEMA,
    CHUNKS,
    JOURNAL,
    KIND_DICTIONARY,
    RAW_REQUESTS,
    RAW_SCHEMA,
)
from bench.store.manifest import Manifest, write_manifest

__all__ = ["RunWriter"]

# Request rows per row group: 1,954 groups of 512 rows took 2 s to read at 1M requests; a
# 64k-row group took ~100 ms to write, long enough to fill the I/O queue at full speed.
_RAW_GROUP_ROWS = 1 << 14
_IO_QUEUE = 8  # batches at the I/O thread before `write` waits for one (~13 MB at 128 chunks)
# Dictionary-encoding t_s (all distinct) tripled the write cost for nothing, and snappy
# saved 1 % of it (t_s is the bulk and does not compress); statistics serve row-group
# skipping, which no reader here does (measured with benchmarks/scale.py).
_CHUNK_OPTIONS: dict[str, Any] = {"use_dictionary": ["request_id", "kind", "tokens", "choice"],
                                  "write_statistics": False, "compression": "none"}
_RAW_OPTIONS: dict[str, Any] = {"write_statistics": False}
_SCALARS = operator.attrgetter(*SCALAR_FIELDS)
_REQUEST_ID = SCALAR_FIELDS.index("request_id")


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
        return pa.Table.from_arrays([pa.array(columns[f.name], type=f.type) for f in RAW_SCHEMA], schema=RAW_SCHEMA)


class RunWriter:
    """Creates a run directory and appends records as they finish.

    `write` runs on the run's event loop once per finished request: it journals the record
    (one unbuffered write) and adds its columns to the pending batch; every BATCH_RECORDS
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
        self._journal = open(run_dir / JOURNAL, "ab", buffering=0)  # closed in close()
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
        self._journal_write(b"".join([journal_line(dict(zip(RECORD_FIELDS, values, strict=True))) for values in batch]))
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
        if len(self._pending.scalars) >= BATCH_RECORDS:
            self._flush()

    def write_manifest(self) -> None:
        """run.json from `self.manifest` as it is now (replaced atomically); RunFailed when it cannot be written."""
        write_manifest(self.run_dir, self.manifest)

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
            schema, options = (CHUNK_SCHEMA, _CHUNK_OPTIONS) if name == CHUNKS else (RAW_SCHEMA, _RAW_OPTIONS)
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
    kind_arr = pa.DictionaryArray.from_arrays(pa.array(np.asarray(kinds, dtype=np.int8), pa.int8()), KIND_DICTIONARY)
    return pa.Table.from_arrays(
        [pa.array(np.asarray(ids, dtype=np.int64), pa.int64()), pa.array(np.asarray(ts, dtype=np.float64), pa.float64()),
         kind_arr, token_arr, pa.array(np.asarray(choices, dtype=np.int32), pa.int32())],
        schema=CHUNK_SCHEMA,
    )
