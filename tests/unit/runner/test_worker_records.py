"""Records shipped from worker processes as plain tuples are stored exactly like records;
the journal of a run in progress is read back incrementally."""

from __future__ import annotations

import pickle
from array import array
from pathlib import Path

import numpy as np
import pandas as pd

from bench.records import (
    KIND_CONTENT,
    KIND_ROLE,
    KIND_USAGE,
    NO_TOKENS,
    ChunkColumns,
    RequestRecord,
    record_values,
)
from bench.store.store import (
    JOURNAL,
    SCHEMA_VERSION,
    JournalReader,
    Manifest,
    RunWriter,
    read_chunks,
    read_raw_requests,
)


def _record(i: int) -> RequestRecord:
    n = i % 7
    failed = i % 5 == 4
    return RequestRecord(
        request_id=i, stage=i % 2, phase="measure", variant="ab"[i % 2], block=i // 2, conversation=-1, turn=0,
        prompt_index=i % 3, scheduled_s=i * 0.01, submitted_s=i * 0.01 + 1e-4, sent_s=i * 0.01 + 2e-4,
        headers_s=None if failed else i * 0.01 + 0.005, end_s=i * 0.01 + 0.05, status="error" if failed else "ok",
        error_kind="http_500" if failed else None, error_message="boom \"quoted\"" if failed else None,
        http_status=500 if failed else 200, retry_after_s=1.5 if failed else None,
        finish_reason=None if failed else "stop", usage_prompt_tokens=None if failed else 9,
        usage_completion_tokens=None if failed else n, server_request_id=f"r{i}", max_tokens=16, n=1 + i % 2,
        done_seen=not failed, reconnected=i % 3 == 0, output_chars=4 * n,
        chunks=ChunkColumns(array("d", [i * 0.01 + 0.01 * (k + 1) for k in range(n + 2)]),
                            array("b", [KIND_ROLE] + [KIND_CONTENT] * n + [KIND_USAGE]),
                            array("i", [NO_TOKENS] + [k % 3 for k in range(n)] + [NO_TOKENS]),
                            array("i", [0] + [k % (1 + i % 2) for k in range(n)] + [0])),
        server_timings={"prompt_ms": 1.25} if i % 4 == 0 else None,
    )


def _manifest() -> Manifest:
    return Manifest(schema_version=SCHEMA_VERSION, bench_version="test", name="w", scenario={}, target={},
                    model="m", seed=0, t0_perf_counter=0.0, started_at="now", ended="completed", python="3",
                    platform="test", host="test")


def test_values_survive_pickling_and_equal_the_record():
    records = [_record(i) for i in range(20)]
    shipped = pickle.loads(pickle.dumps([record_values(r) for r in records], protocol=5))
    assert [RequestRecord(*values) for values in shipped] == records


def test_a_batch_of_values_is_stored_exactly_as_the_records_are(tmp_path: Path):
    records = [_record(i) for i in range(1500)]  # several parquet batches
    one = RunWriter(tmp_path / "records", _manifest())
    for record in records:
        one.write(record)
    one.close()
    other = RunWriter(tmp_path / "values", _manifest())
    values = pickle.loads(pickle.dumps([record_values(r) for r in records], protocol=5))
    for start in range(0, len(values), 256):
        other.write_values(values[start:start + 256])
    other.close()
    assert (tmp_path / "records" / JOURNAL).read_bytes() == (tmp_path / "values" / JOURNAL).read_bytes()
    pd.testing.assert_frame_equal(read_chunks(tmp_path / "records"), read_chunks(tmp_path / "values"))
    raw = read_raw_requests(tmp_path / "values")
    pd.testing.assert_frame_equal(read_raw_requests(tmp_path / "records"), raw)
    assert len(raw) == 1500 and int(np.count_nonzero(raw["status"] == "error")) == 300


def test_the_journal_reader_returns_each_record_once_in_the_order_of_stages(tmp_path: Path):
    writer = RunWriter(tmp_path / "run", _manifest())
    reader = JournalReader(tmp_path / "run")
    records = [_record(i) for i in range(300)]
    seen_raw, seen_chunks = [], []
    for start, end in ((0, 100), (100, 250), (250, 300)):  # three "stages", journalled while open
        for record in records[start:end]:
            writer.write(record)
        raw, chunks = reader.read()
        seen_raw.append(raw)
        seen_chunks.append(chunks)
    empty_raw, empty_chunks = reader.read()
    writer.close()
    assert [len(r) for r in seen_raw] == [100, 150, 50] and len(empty_raw) == 0 and len(empty_chunks) == 0
    everything = read_raw_requests(tmp_path / "run")
    together = pd.concat(seen_raw, ignore_index=True).sort_values("request_id", ignore_index=True)
    pd.testing.assert_frame_equal(together, everything)
    all_chunks = read_chunks(tmp_path / "run")
    assert sum(len(c) for c in seen_chunks) == len(all_chunks)
    ids = seen_chunks[1]["request_id"].to_numpy()
    assert ids.min() == 100 and ids.max() == 249
    assert np.array_equal(seen_chunks[2]["t_s"].to_numpy(),
                          all_chunks.loc[all_chunks["request_id"] >= 250, "t_s"].to_numpy())
