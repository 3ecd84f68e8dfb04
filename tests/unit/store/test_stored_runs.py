"""Stored runs: the format's recovery paths (journal only, parquet files missing or cut
short, a writer never closed), and the streaming summary (chunkscan) against a
straightforward pandas computation."""

from __future__ import annotations

import dataclasses
import json
from array import array
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from unit.metrics import oracle

import bench
from bench import store
from bench.analysis.results import finalize_run
from bench.analysis.summary_model import Summary
from bench.errors import BenchInputError
from bench.metrics import scan as chunkscan
from bench.metrics.catalogue import CACHED_TOKENS, FROM_SCHEDULE, REASONING, SUMMARISED, TOKEN_TRUTH
from bench.metrics.distribution import distribution
from bench.records import (
    CHUNK_KINDS,
    KIND_CONTENT,
    KIND_REASONING,
    KIND_ROLE,
    KIND_USAGE,
    NO_TOKENS,
    ChunkBatch,
    ChunkColumns,
    RequestRecord,
)
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
    assert run.summary.requests.total == (run.requests["phase"] == "measure").sum()
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


def test_a_version_4_run_without_the_columns_of_version_5_still_loads(stored, tmp_path):
    """As version 4 stored it: no `inputs` or `body_s` request column (every answer was
    streamed): read as null, the same metrics and summary."""
    copy = tmp_path / "run"
    copy.mkdir()
    for path in stored.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((stored / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**manifest, "schema_version": 4}))
    new = ["inputs", "body_s"]
    for name in (store.RAW_REQUESTS, store.REQUESTS):
        table = pq.read_table(stored / name)
        assert set(new) <= set(table.column_names)
        pq.write_table(table.drop_columns(new), copy / name)
    lines = [json.loads(line) for line in (stored / store.JOURNAL).read_text().splitlines()]
    (copy / store.JOURNAL).write_text("".join(json.dumps({k: v for k, v in row.items() if k not in new}) + "\n"
                                              for row in lines))
    original, old = bench.load_run(stored), bench.load_run(copy)
    assert old.manifest.schema_version == 4 and old.summary == original.summary
    for raw in (store.read_raw_requests(copy), _journal_only(copy)):
        assert raw["inputs"].isna().all() and raw["body_s"].isna().all()
        pd.testing.assert_frame_equal(raw, store.read_raw_requests(stored))
    pd.testing.assert_frame_equal(old.requests.drop(columns=new, errors="ignore"),
                                  original.requests.drop(columns=new))


def test_the_model_column_is_stored_and_read_as_null_in_runs_from_before_it(tmp_path):
    """`model` came within version 5: a run stored without it reads it as null (no breakdown
    by model); a run with it keeps it in the journal, raw_requests and requests.parquet."""
    rng = np.random.default_rng(3)
    records = [dataclasses.replace(_record(rng, i), model="ab"[i % 3 == 0]) for i in range(60)]
    with_model = tmp_path / "with"
    writer = RunWriter(with_model, _manifest())
    for record in records:
        writer.write(record)
    writer.close()
    finalize_run(with_model, _manifest())
    run = bench.load_run(with_model)
    assert run.requests.sort_values("request_id")["model"].tolist() == [r.model for r in records]
    assert sorted(run.summary.models) == ["a", "b"]
    assert run.summary.models["b"].requests.total == sum(r.model == "b" and r.phase == "measure" for r in records)
    before = tmp_path / "before"
    before.mkdir()
    for path in with_model.iterdir():
        (before / path.name).write_bytes(path.read_bytes())
    for name in (store.RAW_REQUESTS, store.REQUESTS):
        pq.write_table(pq.read_table(with_model / name).drop_columns(["model"]), before / name)
    lines = [json.loads(line) for line in (with_model / store.JOURNAL).read_text().splitlines()]
    (before / store.JOURNAL).write_text("".join(json.dumps({k: v for k, v in row.items() if k != "model"}) + "\n"
                                                for row in lines))
    for raw in (store.read_raw_requests(before), _journal_only(before)):
        assert raw["model"].isna().all() and str(raw["model"].dtype) == "string"
    assert finalize_run(before, _manifest()).summary.models == {}  # summarised again without it
    assert bench.load_run(before).summary.models == {}


def _journal_only(run_dir: Path) -> pd.DataFrame:
    (run_dir / store.RAW_REQUESTS).unlink(missing_ok=True)
    return store.read_raw_requests(run_dir)


def test_a_version_2_run_still_loads(stored, tmp_path):
    """As version 2 stored it: no `workload` in run.json, and a chunk kind dictionary of the
    five kinds of its day (version 3 appended tool_call, function_call and refusal)."""
    copy = tmp_path / "run"
    copy.mkdir()
    for path in stored.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((stored / "run.json").read_text())
    del manifest["workload"]
    (copy / "run.json").write_text(json.dumps({**manifest, "schema_version": 2}))
    table = pq.read_table(stored / store.CHUNKS)
    kind = table.column("kind").combine_chunks()
    old_kinds = pa.DictionaryArray.from_arrays(kind.indices, pa.array(list(CHUNK_KINDS[:5])))
    pq.write_table(table.set_column(table.schema.get_field_index("kind"), "kind", old_kinds), copy / store.CHUNKS)
    original, old = bench.load_run(stored), bench.load_run(copy)
    assert old.manifest.schema_version == 2 and old.manifest.workload is None
    assert old.manifest.model_dump(exclude={"schema_version"}) == original.manifest.model_dump(
        exclude={"schema_version"})
    pd.testing.assert_frame_equal(old.requests, original.requests)
    pd.testing.assert_frame_equal(old.chunks, original.chunks)
    assert old.summary == original.summary


# -- the streaming summary ----------------------------------------------------------------


def _reference_gaps(chunks: pd.DataFrame) -> pd.DataFrame:
    """ITL the plain pandas way: token chunks sorted by request, choice and time; each
    gap from the previous token chunk of the same request and choice."""
    tok = chunks[chunks["kind"].isin(["content", "reasoning"])].sort_values(["request_id", "choice", "t_s"])
    previous = tok.groupby(["request_id", "choice"])["t_s"].shift()
    return pd.DataFrame({"request_id": tok["request_id"], "itl_ms": (tok["t_s"] - previous) * 1e3}).dropna()


def _assert_same_distribution(got: dict, want: dict) -> None:
    assert got["count"] == want["count"]
    assert {k: v for k, v in got.items() if k != "mean"} == {k: v for k, v in want.items() if k != "mean"}
    # the mean sums the same gaps in another order when choices interleave: the last bits may differ
    assert got["mean"] == pytest.approx(want["mean"], rel=1e-12)


def test_streaming_summary_matches_pandas(stored):
    run = bench.load_run(stored)
    chunks = run.chunks
    raw = store.read_raw_requests(stored)
    assert len(raw) == 1200 and raw["request_id"].tolist() == list(range(1200))
    pd.testing.assert_frame_equal(run.requests, oracle.per_request(raw, chunks))
    tok = chunks[chunks["kind"].isin(["content", "reasoning"])]
    first = tok.groupby("request_id")["t_s"].min()
    req = run.requests.set_index("request_id")
    assert req["first_token_s"].dropna().to_dict() == first.to_dict()
    assert (req["output_tokens"] > 0).any() and (req["token_source"] == "chunks").any()
    assert req["server_prompt_ms"].dropna().eq(1.5).all() and req["server_prompt_ms"].notna().sum() == 150

    gaps = _reference_gaps(chunks)
    measured = run.requests[run.requests["phase"] == "measure"]
    groups = {(): measured}
    groups.update({("stages", str(s)): measured[measured["stage"] == s] for s in (0, 1)})
    groups.update({("variants", v): measured[measured["variant"] == v] for v in "ab"})
    for path, frame in groups.items():
        ok = frame.loc[frame["status"] == "ok", "request_id"]
        want = distribution(gaps.loc[gaps["request_id"].isin(ok), "itl_ms"]).to_json()
        got = run.summary.to_json()
        for key in path:
            got = got[key]
        assert want["count"] > 100
        _assert_same_distribution(got["itl_ms"], want)
        assert got["ttft_ms"] == distribution(frame.loc[frame["status"] == "ok", "ttft_ms"]).to_json()
        assert got["requests"]["total"] == len(frame)
    assert set(run.summary.requests.errors) == {"http_500", "cancelled"}
    assert run.summary.slo is not None and run.summary.paired is not None
    # the in-memory path (a chunk frame) gives the same summary as the stored one (which adds
    # the saturation verdict, read with the manifest's stage notes)
    assert run.summary.saturation == []
    assert bench.analysis.summary.summarize(run.requests, chunks, 20.0, SLO) == dataclasses.replace(
        run.summary, saturation=None)
    # and Run.itl, from the chunk frame, the same gaps
    ok = measured.loc[measured["status"] == "ok", "request_id"]
    assert sorted(run.itl["itl_ms"]) == sorted(gaps.loc[gaps["request_id"].isin(ok), "itl_ms"])


def test_run_itl_streamed_from_disk_is_metrics_itl_gaps(stored):
    chunks = store.read_chunks(stored)
    run = bench.load_run(stored)
    req = run.requests
    ok = req.loc[(req["status"] == "ok") & (req["phase"] == "measure"), "request_id"]
    want = oracle.itl_gaps(chunks[chunks["request_id"].isin(ok)])

    def ordered(gaps: pd.DataFrame) -> pd.DataFrame:
        return gaps.sort_values(["request_id", "t_s", "itl_ms"], kind="stable").reset_index(drop=True)

    assert len(want) > 1000 and want["request_id"].nunique() < len(ok)  # some ok requests have no gap
    streamed = run.itl  # run.chunks was never read: the stored batches were scanned
    assert "chunks" not in run.__dict__
    pd.testing.assert_frame_equal(ordered(streamed), ordered(want))
    in_memory = bench.load_run(stored)
    assert len(in_memory.chunks) == len(chunks)  # read first: Run.itl scans this frame instead
    pd.testing.assert_frame_equal(ordered(in_memory.itl), ordered(want))


def test_batches_cut_anywhere_give_the_same_gaps(stored):
    whole = store.frame_batch(store.read_chunks(stored))
    keep = np.arange(0, 1200, 2)
    reference = chunkscan.scan(lambda: [whole], keep)
    for size in (1, 7, 500):
        pieces = [ChunkBatch(*(col[i:i + size] for col in whole)) for i in range(0, whole.t_s.size, size)]
        result = chunkscan.scan(lambda pieces=pieces: pieces, keep, rows=whole.t_s.size)
        pd.testing.assert_frame_equal(result.stats, reference.stats)
        np.testing.assert_array_equal(result.gaps.values, reference.gaps.values)
        np.testing.assert_array_equal(result.gaps.request_ids, reference.gaps.request_ids)
    assert set(reference.gaps.request_ids) <= set(keep)


def test_token_rate_streamed_from_batches_is_metrics_token_rate(stored):
    chunks = store.read_chunks(stored)
    whole = store.frame_batch(chunks)
    for bin_s in (0.05, 1.0):
        want = oracle.token_rate(chunks, bin_s)
        assert len(want) > 1 and want["tokens_per_s"].gt(0).any()
        for size in (7, 5000):
            pieces = [ChunkBatch(*(col[i:i + size] for col in whole)) for i in range(0, whole.t_s.size, size)]
            pd.testing.assert_frame_equal(chunkscan.token_rate(pieces, bin_s), want)
    run = bench.load_run(stored)
    pd.testing.assert_frame_equal(run.token_rate(0.05), oracle.token_rate(chunks, 0.05))
    assert "chunks" not in run.__dict__


def test_a_request_stored_in_two_places_still_gives_every_gap(stored):
    chunks = store.read_chunks(stored)
    ok = bench.load_run(stored).requests.query("status == 'ok'")["request_id"]
    half = len(chunks) // 2
    shuffled = pd.concat([chunks.iloc[half:], chunks.iloc[:half]], ignore_index=True)  # a request cut in two
    moved = pd.concat([shuffled.iloc[::2], shuffled.iloc[1::2]], ignore_index=True)  # every request in two places
    want = _reference_gaps(chunks)
    for frame in (shuffled, moved):
        gaps = chunkscan.scan_frame(frame, ok).gaps
        got = gaps.take(ok)
        assert sorted(got) == sorted(want.loc[want["request_id"].isin(ok), "itl_ms"])
        pd.testing.assert_frame_equal(oracle.token_stats(frame).sort_index(),
                                      chunkscan.scan_frame(frame, ok).stats.sort_index(), check_index_type=False)


def test_take_consumes_only_when_everything_is_selected():
    gaps = chunkscan.ItlGaps(np.array([1.0, 2.0, 3.0]), np.array([4, 9]), np.array([2, 1]))
    assert gaps.take([9], consume=True).tolist() == [3.0]
    assert gaps.take([4, 9, 11], consume=True).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError):
        gaps.take([4])


def test_runs_are_opened_without_reading_their_chunks(stored, tmp_path):
    copy = tmp_path / "run"
    copy.mkdir()
    for path in stored.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    run = bench.load_run(copy)
    (copy / store.CHUNKS).unlink()
    (copy / store.JOURNAL).unlink()
    assert run.summary.requests.total > 0 and len(run.requests) == 1200  # opened without them
    with pytest.raises(BenchInputError):
        _ = run.chunks


# -- summary.json ----------------------------------------------------------------------------

STORED_SUMMARY = Path(__file__).parents[2] / "data" / "summaries" / "summary-2026-11-floor-plan.json"


def test_a_summary_stored_before_the_typed_model_reads_and_writes_back_byte_for_byte():
    """summary.json as bench wrote it before `Summary` existed (this test's run, stages,
    variants, paired comparison and SLO included): read into the typed model and written
    back, the same bytes."""
    text = STORED_SUMMARY.read_text(encoding="utf-8")
    summary = Summary.from_json(json.loads(text))
    assert summary.stages and summary.variants and summary.paired is not None and summary.slo is not None
    assert json.dumps(summary.to_json(), indent=2) + "\n" == text
    assert Summary.from_json(summary.to_json()) == summary


def _without(data, keys):
    """summary.json's dict without the given metric keys, in every stage and variant too."""
    if not isinstance(data, dict):
        return data
    return {k: _without(v, keys) for k, v in data.items() if k not in keys}


def test_summary_json_is_the_typed_summary(stored):
    run = bench.load_run(stored)
    stored_text = (stored / store.SUMMARY).read_text(encoding="utf-8")
    assert json.dumps(run.summary.to_json(), indent=2) + "\n" == stored_text
    now = json.loads(stored_text)
    # input tokens/s came after the golden file: total tokens/s less output tokens/s, in every scope
    for scope in (now, *now["stages"].values(), *now["variants"].values()):
        thr = scope["throughput"]
        assert thr.pop("input_tokens_per_s") == pytest.approx(thr["total_tokens_per_s"] - thr["output_tokens_per_s"])
    # unchanged numbers; the reasoning-phase, from-schedule, cached-token and token-truth metrics and
    # the percentiles' intervals (`precision`, in every scope) came after the stored file was written
    added = {m.summary_key for m in (*REASONING, *FROM_SCHEDULE, CACHED_TOKENS, *TOKEN_TRUTH)} | {"precision"}
    assert all("precision" in scope for scope in (now, *now["stages"].values(), *now["variants"].values()))
    assert list(run.summary.distributions) == [m.summary_key for m in SUMMARISED]  # a new summary has all
    assert _without(now, added) == json.loads(STORED_SUMMARY.read_text(encoding="utf-8"))


def test_a_summary_without_saturation_is_read_as_not_stored(stored, tmp_path):
    """Runs stored before the saturation verdict: `saturation` is None, and computed."""
    data = json.loads((stored / store.SUMMARY).read_text(encoding="utf-8"))
    del data["saturation"]
    summary = Summary.from_json(data)
    assert summary.saturation is None and "saturation" not in summary.to_json()
