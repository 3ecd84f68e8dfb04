"""The answers' kept texts and the token counts made after a run, on disk: the texts go
through the journal and raw_requests.parquet alike (worker tuples too), the counts to their
own file beside the records, and a run without them reads as having none."""

from __future__ import annotations

from array import array

import pandas as pd
import pytest

from bench.errors import RunFailed
from bench.records import KIND_CONTENT, NO_TOKENS, ChunkColumns, RequestRecord, record_values
from bench.store import (
    RAW_REQUESTS,
    SCHEMA_VERSION,
    TOKEN_COUNTS,
    Manifest,
    RunWriter,
    read_raw_requests,
    read_token_counts,
    write_token_counts,
)


def _record(request_id: int, texts: tuple[str, ...] | None) -> RequestRecord:
    return RequestRecord(
        request_id=request_id, stage=0, phase="measure", variant="", block=-1, conversation=-1, turn=0,
        prompt_index=0, scheduled_s=0.0, submitted_s=0.0, sent_s=0.0, headers_s=0.01, end_s=0.1, status="ok",
        error_kind=None, error_message=None, http_status=200, retry_after_s=None, finish_reason="stop",
        usage_prompt_tokens=3, usage_completion_tokens=2, server_request_id=None, max_tokens=4, n=1,
        done_seen=True, reconnected=False, output_chars=5,
        chunks=ChunkColumns(array("d", [0.05]), array("b", [KIND_CONTENT]), array("i", [NO_TOKENS]), array("i", [0])),
        output_texts=texts)


def _manifest() -> Manifest:
    return Manifest(schema_version=SCHEMA_VERSION, bench_version="test", name="t", scenario={}, target={},
                    model="m", seed=0, t0_perf_counter=0.0, started_at="now", ended="completed", python="3",
                    platform="test", host="test")


TEXTS = {0: ("Hello wor", "ld"), 1: None, 2: ("",), 3: ("naïve ✓ \n",)}


def test_kept_texts_read_back_from_parquet_and_from_the_journal(tmp_path):
    writer = RunWriter(tmp_path / "run", _manifest())
    writer.write(_record(0, TEXTS[0]))
    writer.write(_record(1, TEXTS[1]))
    writer.write_values([record_values(_record(2, TEXTS[2])), record_values(_record(3, TEXTS[3]))])
    writer.close()
    from_parquet = read_raw_requests(tmp_path / "run")
    unread = read_raw_requests(tmp_path / "run", texts=False)  # what the metrics read: every other column
    assert unread["output_texts"].isna().all()
    assert unread.drop(columns="output_texts").equals(from_parquet.drop(columns="output_texts"))
    (tmp_path / "run" / RAW_REQUESTS).unlink()
    from_journal = read_raw_requests(tmp_path / "run")
    for frame in (from_parquet, from_journal):
        assert [None if v is None else tuple(v) for v in frame["output_texts"]] == [TEXTS[i] for i in range(4)]


def test_counts_are_written_whole_and_read_typed(tmp_path):
    assert read_token_counts(tmp_path) is None  # a run that counted nothing
    counts = pd.DataFrame({"request_id": [0, 0, 2], "source": ["server_tokenize", "tokenizer", "tokenizer"],
                           "count": pd.array([3, None, 0], dtype="Int64")})
    write_token_counts(tmp_path, counts)
    back = read_token_counts(tmp_path)
    assert back is not None
    assert back["count"].tolist() == [3, pd.NA, 0] and str(back["count"].dtype) == "Int64"
    assert back["source"].tolist() == ["server_tokenize", "tokenizer", "tokenizer"]
    assert [p.name for p in tmp_path.iterdir()] == [TOKEN_COUNTS]  # no temporary file left
    with pytest.raises(ValueError, match="unknown token-count sources"):
        write_token_counts(tmp_path, counts.assign(source="guess"))


def test_an_unwritable_directory_is_a_run_failure(tmp_path):
    counts = pd.DataFrame({"request_id": [0], "source": ["tokenizer"], "count": pd.array([1], dtype="Int64")})
    with pytest.raises(RunFailed, match="cannot write token counts"):
        write_token_counts(tmp_path / "missing", counts)
