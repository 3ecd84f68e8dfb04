"""ChunkSource.batches reads the next batch in a thread: the batches are the stored rows in
order, whatever the number of reads, and a reader that stops early leaves no thread."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow.parquet as pq
import pytest
from unit.store.test_stored_runs import _write

from bench import store
from bench.records import CHUNK_KINDS
from bench.store import reader


@pytest.fixture(scope="module")
def many_groups(tmp_path_factory):
    """A stored run whose chunks.parquet has row groups of 100 rows (dozens of them)."""
    run_dir = tmp_path_factory.mktemp("ahead") / "run"
    _write(run_dir, count=600)
    table = pq.read_table(run_dir / store.CHUNKS)
    pq.write_table(table, run_dir / store.CHUNKS, row_group_size=100)
    assert pq.ParquetFile(run_dir / store.CHUNKS).num_row_groups > 10
    return run_dir, table


@pytest.mark.parametrize("batch_rows", [1, 250, 1000, 1 << 20])  # a group a read ... every group in one
def test_the_batches_are_the_stored_rows_in_order(many_groups, monkeypatch, batch_rows):
    run_dir, table = many_groups
    monkeypatch.setattr(reader, "_READ_BATCH_ROWS", batch_rows)
    batches = list(store.chunk_source(run_dir).batches())
    groups = pq.ParquetFile(run_dir / store.CHUNKS).num_row_groups
    assert len(batches) == -(-groups // max(1, batch_rows * groups // table.num_rows))
    assert np.array_equal(np.concatenate([b.request_id for b in batches]), table.column("request_id").to_numpy())
    assert np.array_equal(np.concatenate([b.t_s for b in batches]), table.column("t_s").to_numpy())
    kinds = [CHUNK_KINDS[k] for k in np.concatenate([b.kind for b in batches])]
    assert kinds == table.column("kind").to_pylist()


def test_a_reader_that_stops_early_leaves_no_read_thread(many_groups, monkeypatch):
    run_dir, _ = many_groups
    monkeypatch.setattr(reader, "_READ_BATCH_ROWS", 1)
    batches = store.chunk_source(run_dir).batches()
    first = next(batches)
    assert first.request_id.size == 100
    assert any(t.name.startswith("bench-chunk-read") for t in threading.enumerate())
    batches.close()
    assert not any(t.name.startswith("bench-chunk-read") for t in threading.enumerate())
