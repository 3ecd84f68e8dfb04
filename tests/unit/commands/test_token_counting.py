"""Counting a stored run's kept answer texts after the run: every choice counted, summed per
request; a request with a choice the server could not count has no server count; failed
requests and requests without texts are not counted."""

from __future__ import annotations

import asyncio
from array import array

import pandas as pd
from tokenizers_json import word_tokenizer

from bench.commands.tokens import count_output_tokens
from bench.records import KIND_CONTENT, NO_TOKENS, ChunkColumns, RequestRecord
from bench.scenario.token_counts import TokenCounting
from bench.sim import start_sim
from bench.store import SCHEMA_VERSION, Manifest, RunWriter, read_token_counts
from bench.target.tokenizer_file import load_tokenizer

# request id: (status, model, kept choice texts)
RECORDS = {
    0: ("ok", "sim-small", (" one two", " three four five")),  # two choices: 2 + 3
    1: ("ok", None, (" six",)),  # the run's model
    2: ("ok", "no-such", (" seven eight", " nine")),  # the server refuses the model: no server count
    3: ("error", "sim-small", (" ten",)),  # failed: not counted
    4: ("ok", "sim-small", None),  # nothing kept
    5: ("ok", "sim-small", ("", "")),  # generated nothing
}


def _record(request_id: int) -> RequestRecord:
    status, model, texts = RECORDS[request_id]
    return RequestRecord(
        request_id=request_id, stage=0, phase="measure", variant="", block=-1, conversation=-1, turn=0,
        prompt_index=0, scheduled_s=0.0, submitted_s=0.0, sent_s=0.0, headers_s=0.01, end_s=0.1, status=status,
        error_kind=None if status == "ok" else "http_500", error_message=None, http_status=200,
        retry_after_s=None, finish_reason="stop", usage_prompt_tokens=3, usage_completion_tokens=None,
        server_request_id=None, max_tokens=4, n=len(texts or ("",)), done_seen=True, reconnected=False,
        output_chars=0, chunks=ChunkColumns(array("d", [0.05]), array("b", [KIND_CONTENT]), array("i", [NO_TOKENS]),
                                            array("i", [0])),
        model=model, output_texts=texts)


def test_choices_are_summed_per_request_by_every_source(tmp_path):
    manifest = Manifest(schema_version=SCHEMA_VERSION, bench_version="test", name="t", scenario={}, target={},
                        model="sim-small", seed=0, t0_perf_counter=0.0, started_at="now", ended="completed",
                        python="3", platform="test", host="test")
    writer = RunWriter(tmp_path / "run", manifest)
    for request_id in RECORDS:
        writer.write(_record(request_id))
    writer.close()
    tokenizer = load_tokenizer(word_tokenizer(tmp_path / "tokenizer.json", ["one"]))
    with start_sim("default", seed=1) as sim:
        outcome = asyncio.run(count_output_tokens(tmp_path / "run", TokenCounting(tokenizer="x"), tokenizer,
                                                  sim.base_url, None, "sim-small", 10.0))
    assert outcome.failure is None
    assert any("POST /tokenize (vllm shape, 4 answers); 2 of 7 texts could not be counted" in n for n in outcome.notes)
    counts = read_token_counts(tmp_path / "run")
    assert counts is not None
    table = counts.pivot(index="request_id", columns="source", values="count")
    assert table.index.tolist() == [0, 1, 2, 5]
    assert table["tokenizer"].tolist() == [5, 1, 3, 0]
    assert table["server_tokenize"].tolist() == [5, 1, pd.NA, 0]
