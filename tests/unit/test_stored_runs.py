"""Stored runs: the format's recovery paths (journal only, parquet files missing or cut
short, a writer never closed)."""

from __future__ import annotations

import json
from array import array
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench
from bench import store
from bench.errors import BenchInputError
from bench.records import (
    KIND_CONTENT,
    KIND_REASONING,
    KIND_ROLE,
    KIND_USAGE,
    NO_TOKENS,
    ChunkColumns,
    RequestRecord,
)
from bench.results import finalize_run
from bench.store import SCHEMA_VERSION, Manifest, RunWriter

SLO = {"ttft_ms": 80.0, "tpot_ms": 30.0, "percentile": 90}


def _record(rng: np.random.Generator, request_id: int) -> RequestRecord:
    """A request of a two-stage, two-variant run: some with two interleaved choices, some
    failed or cancelled part-way, some warmup, token counts sometimes given."""
    stage = request_id % 2
    variant = "ab"[(request_id // 2) % 2]
    phase = "warmup" if request_id < 6 else "measure"
    status = "ok"
    if request_id % 11 == 3:
        status = "error"
    elif request_id % 13 == 5:
        status = "cancelled"
    choices = 2 if request_id % 5 == 0 else 1
    per_choice = int(rng.integers(0, 12)) if status != "ok" else int(rng.integers(1, 12))
    sent = request_id * 0.05 + float(rng.uniform(0, 0.01))
    t = [sent + 0.01]
    kind, tokens, choice = [KIND_ROLE], [NO_TOKENS], [0]
    now = sent + float(rng.uniform(0.02, 0.1))
    for i in range(per_choice):
        for c in range(choices):
            now += float(rng.exponential(0.01))
            t.append(now)
            kind.append(KIND_REASONING if i < 2 and request_id % 3 == 0 else KIND_CONTENT)
            tokens.append(int(rng.integers(1, 4)) if request_id % 4 == 1 else NO_TOKENS)
            choice.append(c)
    if status == "ok":
        t.append(now + 0.001)
        kind.append(KIND_USAGE)
        tokens.append(NO_TOKENS)
        choice.append(0)
    given_usage = status == "ok" and request_id % 7 != 2
    return RequestRecord(
        request_id=request_id, stage=stage, phase=phase, variant=variant, block=request_id // 4, conversation=-1,
        turn=0, prompt_index=request_id % 9, scheduled_s=sent - 0.001, submitted_s=sent - 0.0005, sent_s=sent,
        headers_s=sent + 0.005, end_s=now + 0.002, status=status,
        error_kind=None if status == "ok" else ("http_500" if status == "error" else "cancelled"),
        error_message=None if status == "ok" else "x", http_status=200 if status != "error" else 500,
        retry_after_s=None, finish_reason="length" if status == "ok" else None,
        usage_prompt_tokens=20 if given_usage else None,
        usage_completion_tokens=per_choice * choices if given_usage else None,
        server_request_id=f"s{request_id}", max_tokens=16, n=choices, done_seen=status == "ok", reconnected=False,
        output_chars=4 * per_choice, server_timings={"prompt_ms": 1.5, "predicted_n": per_choice} if request_id % 8 == 0 else None,
        chunks=ChunkColumns(array("d", t), array("b", kind), array("i", tokens), array("i", choice)),
    )


def _manifest() -> Manifest:
    return Manifest(schema_version=SCHEMA_VERSION, bench_version="test", name="scan",
                    scenario={"load": {"rate": 20.0}, "slo": SLO}, target={}, model="m", seed=0,
                    t0_perf_counter=0.0, started_at="now", ended="completed", python="3", platform="test", host="test")


def _write(run_dir: Path, count: int = 1200, close: bool = True) -> RunWriter:
    rng = np.random.default_rng(7)
    records = [_record(rng, i) for i in range(count)]
    order = rng.permutation(count)  # requests finish out of order
    writer = RunWriter(run_dir, _manifest())
    for i in order:
        writer.write(records[i])
    if close:
        writer.close()
    return writer


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("scan") / "run"
    _write(run_dir)
    finalize_run(run_dir, _manifest())
    return run_dir

# -- the format ---------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["missing", "cut_short"])
def test_the_journal_rebuilds_what_the_parquet_files_lack(stored, tmp_path, damage):
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("run.json", store.JOURNAL, store.CHUNKS, store.RAW_REQUESTS):
        (copy / name).write_bytes((stored / name).read_bytes())
    for name in (store.CHUNKS, store.RAW_REQUESTS):
        if damage == "missing":
            (copy / name).unlink()
        else:
            data = (copy / name).read_bytes()
            (copy / name).write_bytes(data[: len(data) // 2])
    original = bench.load_run(stored)
    rebuilt = bench.load_run(copy)
    pd.testing.assert_frame_equal(rebuilt.requests, original.requests)
    assert rebuilt.summary == original.summary
    pd.testing.assert_frame_equal(rebuilt.chunks, original.chunks)


def test_an_unclosed_writer_loses_no_journalled_record(tmp_path):
    """As after kill -9: no parquet footer, the last journal line cut short."""
    run_dir = tmp_path / "run"
    writer = _write(run_dir, count=700, close=False)  # one batch already in the parquet files
    assert writer.count == 700
    with open(run_dir / store.JOURNAL, "ab") as journal:
        journal.write(b'{"request_id": 9999, "stage"')
    run = bench.load_run(run_dir)
    assert sorted(run.requests["request_id"]) == list(range(700))
    assert run.summary["requests"]["total"] == (run.requests["phase"] == "measure").sum()
    rng = np.random.default_rng(7)
    records = [_record(rng, i) for i in range(700)]
    assert len(run.chunks) == sum(len(r.chunks) for r in records)
    sample = run.chunks[run.chunks["request_id"] == 10]
    assert sample["t_s"].tolist() == list(records[10].chunks.t)
    assert sample["choice"].tolist() == list(records[10].chunks.choice)
    writer.close()


def test_journal_lines_are_compact_and_exact(stored):
    lines = (stored / store.JOURNAL).read_bytes().splitlines()
    assert len(lines) == 1200
    rows = [json.loads(line) for line in lines]
    by_id = {row["request_id"]: row for row in rows}
    rng = np.random.default_rng(7)
    records = {i: _record(rng, i) for i in range(1200)}
    for request_id in (0, 1, 3, 10):
        t, kind, tokens, choice = store.journal_chunks(by_id[request_id])
        chunks = records[request_id].chunks
        assert t.tolist() == list(chunks.t) and kind.tolist() == list(chunks.kind)
        assert tokens.tolist() == list(chunks.tokens) and choice.tolist() == list(chunks.choice)
    assert by_id[2]["chunks"]["tokens"] == NO_TOKENS and by_id[2]["chunks"]["choice"] == 0
    assert by_id[10]["chunks"]["choice"] != 0  # two choices: the column itself
    assert by_id[8]["server_timings"] == records[8].server_timings


def test_another_schema_version_is_refused(stored, tmp_path):
    copy = tmp_path / "run"
    copy.mkdir()
    manifest = json.loads((stored / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**manifest, "schema_version": 1}))
    with pytest.raises(BenchInputError, match="schema_version 1 is not supported"):
        bench.load_run(copy)
