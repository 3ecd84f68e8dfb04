"""A report of a finalized run reads none of its chunks (finalize stored what it needs of
them, `bench.analysis.derived`); without those files, it reads them once: the dialect tables,
the ITL values of the figures and the token rates of the timeline and of the steady state
share that read. Either way each figure is the one computed on its own from the chunks."""

from __future__ import annotations

import shutil
from array import array
from pathlib import Path

import numpy as np
import pytest

from bench.analysis import derived
from bench.analysis.results import finalize_run, load_run
from bench.analysis.steady import steady_bin_s, steady_state
from bench.metrics import scan
from bench.metrics.catalogue import counted_ids
from bench.metrics.dialects import DIALECTS, dialect_figures
from bench.records import KIND_CONTENT, KIND_REASONING, KIND_ROLE, KIND_USAGE, NO_TOKENS, ChunkColumns, RequestRecord
from bench.report import document
from bench.store import SCHEMA_VERSION, Manifest, RunWriter, chunk_source

MANIFEST = Manifest(schema_version=SCHEMA_VERSION, bench_version="test", name="one-read",
                    scenario={"load": {"rate": 100.0}}, target={}, model="m", seed=0, t0_perf_counter=0.0,
                    started_at="now", ended="completed", python="3", platform="test", host="test")


def record(rng: np.random.Generator, i: int) -> RequestRecord:
    """A streamed answer: role, (reasoning for some), content chunks of 1-3 tokens, usage."""
    sent = i * 0.01
    n = int(rng.integers(2, 20))
    t = (sent + 0.02 + np.cumsum(rng.exponential(0.005, n + 2))).tolist()
    kinds = [KIND_ROLE] + [KIND_REASONING if i % 3 == 0 and k < 2 else KIND_CONTENT for k in range(n)] + [KIND_USAGE]
    tokens = [NO_TOKENS] + [int(rng.integers(1, 4)) if i % 4 == 1 else NO_TOKENS for _ in range(n)] + [NO_TOKENS]
    return RequestRecord(
        request_id=i, stage=0, phase="warmup" if i < 5 else "measure", variant="", block=-1, conversation=-1, turn=0,
        prompt_index=i, scheduled_s=sent, submitted_s=sent, sent_s=sent, headers_s=sent + 0.01, end_s=t[-1] + 1e-3,
        status="ok", error_kind=None, error_message=None, http_status=200, retry_after_s=None, finish_reason="length",
        usage_prompt_tokens=10, usage_completion_tokens=n if i % 7 else None, server_request_id=str(i), max_tokens=n,
        n=1, done_seen=True, reconnected=False, output_chars=4 * n,
        chunks=ChunkColumns(array("d", t), array("b", kinds), array("i", tokens), array("i", [0] * (n + 2))),
    )


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("one-read") / "run"
    rng = np.random.default_rng(5)
    writer = RunWriter(run_dir, MANIFEST)
    for i in range(2000):
        writer.write(record(rng, i))
    writer.close()
    finalize_run(run_dir, MANIFEST)
    return run_dir


@pytest.mark.parametrize("stored_figures", [True, False])
def test_a_report_reads_the_chunks_at_most_once_and_each_figure_is_its_own(stored, monkeypatch, tmp_path,
                                                                           stored_figures):
    if not stored_figures:
        stored = Path(shutil.copytree(stored, tmp_path / "run"))
        for name in (derived.DERIVED, derived.ITL_VALUES, derived.ITL_BLOCKS):
            (stored / name).unlink()
    reads = []
    real = scan.read_once
    monkeypatch.setattr(scan, "read_once", lambda batches, consumers: reads.append(len(consumers))
                        or real(batches, consumers))
    run = load_run(stored)
    content = document.build_content(run)
    assert len(reads) == (0 if stored_figures else 1)
    # each against its own read of the chunks, on a fresh load of the run
    monkeypatch.setattr(scan, "read_once", real)
    fresh = load_run(stored)
    source = chunk_source(stored)
    alone = [dialect_figures(fresh.requests, source.batches, [d])[0] for d in DIALECTS]
    shared = next(t for t in content.tables if t.title.startswith("Metric dialects: this run"))
    assert shared == document.dialects_table(alone)
    gaps = scan.scan(source.batches, counted_ids(fresh.requests)).gaps.values
    assert np.array_equal(run.itl_values(), gaps)
    bin_s = steady_bin_s(fresh.requests)
    assert bin_s is not None
    for width in (1.0, bin_s):
        assert run.token_rate(width).equals(scan.token_rate(source.batches(), width))
    assert steady_state(run) == steady_state(fresh)


def test_compare_gives_the_same_table_from_the_stored_gaps_as_from_the_chunks(stored, tmp_path):
    from bench.report.compare import compare_runs

    bare = Path(shutil.copytree(stored, tmp_path / "bare"))
    for name in (derived.DERIVED, derived.ITL_VALUES, derived.ITL_BLOCKS):
        (bare / name).unlink()
    other = Path(shutil.copytree(bare, tmp_path / "other"))
    from_files = compare_runs([load_run(stored), load_run(stored)], n_resamples=500)
    from_chunks = compare_runs([load_run(bare), load_run(other)], n_resamples=500)
    assert load_run(stored).derived is not None and load_run(bare).derived is None
    assert repr(from_files.rows) == repr(from_chunks.rows)  # (repr: NaN equals NaN there)
