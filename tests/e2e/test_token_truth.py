"""Token truth end to end: a run that opts in (`tokens:`) keeps each answer's text, counts it
after the run with the simulator's own /tokenize and with a local tokenizer.json, and the
counts equal the simulator's ground truth; a usage that under-counts by a known number of
tokens (the profile's usage_completion_offset) shows as exactly that difference on every
request, in the summary, the report and a validity warning."""

from __future__ import annotations

import pytest
from benchtest import run_in_process, sim_truth
from tokenizers_json import word_tokenizer

import bench
from bench.analysis import validity
from bench.commands.cli import main
from bench.metrics.catalogue import OUTPUT_TOKENS, TOKEN_COUNT_DIFF, TOKEN_COUNT_REL_DIFF, counted
from bench.report.console import summary_lines
from bench.report.tables import report_tables
from bench.sim import start_sim
from bench.store import TOKEN_COUNTS, read_token_counts

UNDER = 3  # the simulator's usage says this many tokens fewer than it generated
PROFILE = {"models": ["sim-tok"], "decode_ms_base": 1.0, "decode_ms_per_seq": 0.0, "prefill_ms_per_token": 0.0,
           "output_len": {"dist": "uniform", "min": 8, "max": 40}, "usage_completion_offset": -UNDER}


def _scenario(base_url: str, tokens: dict | None) -> dict:
    data = {"name": "tokens", "seed": 5, "target": {"base_url": base_url},
            "requests": {"synthetic": {"prompt_tokens": 32, "output_tokens": 64}},
            "load": {"concurrency": 4, "max_requests": 24, "warmup": {"requests": 0}}}
    if tokens is not None:
        data["tokens"] = tokens
    return data


def test_counts_equal_the_simulators_truth_and_the_difference_is_the_knob(tmp_path):
    tokenizer = word_tokenizer(tmp_path / "tokenizer.json", ["the", "river", "garden"])
    with start_sim(profile=PROFILE, seed=3) as sim:
        run = run_in_process(tmp_path, _scenario(sim.base_url, {"tokenizer": tokenizer.name})).run
        truth = sim_truth(sim.root_url)
    ok = counted(run.requests)
    assert len(ok) == 24
    generated = ok["server_request_id"].map(lambda rid: truth[rid]["output_tokens"]).astype(int)
    assert (generated >= 8).all() and generated.nunique() > 1
    # both independent counts are the simulator's truth; its usage is UNDER short
    assert (ok["output_tokens_server_tokenize"].astype(int) == generated).all()
    assert (ok["output_tokens_tokenizer"].astype(int) == generated).all()
    assert (ok["usage_completion_tokens"].astype(int) == generated - UNDER).all()
    # the metrics keep the usage (first in order) and compare it with the server's count
    assert (ok["token_source"] == "usage").all() and (ok["token_check_source"] == "server_tokenize").all()
    assert (ok[OUTPUT_TOKENS.key].astype(int) == generated - UNDER).all()
    assert (ok[TOKEN_COUNT_DIFF.key] == -UNDER).all()
    assert ok[TOKEN_COUNT_REL_DIFF.key].to_numpy() == pytest.approx(UNDER / generated.to_numpy())
    summary = run.summary
    assert summary.throughput.token_disagreement_share == 1.0
    diff = summary.metric(TOKEN_COUNT_DIFF)
    assert diff.count == 24 and diff.p50 == -UNDER and diff.max == -UNDER
    assert "token_counts" in [w.code for w in validity.check(run)]
    assert any(line.startswith("token counts: 100.0% of 24 requests") for line in summary_lines(summary))
    assert any(t.title.startswith("Token counts") for t in report_tables(run))
    # stored beside the records, read back the same by a fresh load
    counts = read_token_counts(run.path)
    assert counts is not None and set(counts["source"]) == {"server_tokenize", "tokenizer"}
    again = bench.load_run(run.path)
    assert (counted(again.requests)[TOKEN_COUNT_DIFF.key] == -UNDER).all()
    assert "output_texts" not in again.requests


def test_without_the_section_nothing_is_kept_or_counted(tmp_path):
    with start_sim(profile=PROFILE, seed=3) as sim:
        run = run_in_process(tmp_path, _scenario(sim.base_url, None)).run
    assert not (run.path / TOKEN_COUNTS).exists()
    assert bench.store.read_raw_requests(run.path)["output_texts"].isna().all()
    assert run.summary.throughput.token_disagreement_share is None
    assert run.summary.metric(TOKEN_COUNT_DIFF).count == 0
    assert "token_counts" not in [w.code for w in validity.check(run)]
    assert not any(t.title.startswith("Token counts") for t in report_tables(run))


def test_a_usage_off_by_the_eos_token_only_is_no_warning(tmp_path):
    profile = {**PROFILE, "usage_completion_offset": 1}
    with start_sim(profile=profile, seed=3) as sim:
        run = run_in_process(tmp_path, _scenario(sim.base_url, {"server_tokenize": True})).run
    ok = counted(run.requests)
    assert (ok[TOKEN_COUNT_DIFF.key] == 1).all()
    assert "token_counts" not in [w.code for w in validity.check(run)]


def test_server_tokenize_true_fails_the_run_on_a_server_without_it(tmp_path, monkeypatch):
    """A server that has no /tokenize: `true` fails the run (its records are kept), `auto`
    notes it and goes on."""
    from bench.target import tokenize_client

    monkeypatch.setattr(tokenize_client, "PROBE_TEXT", "")  # counts 0 tokens: as no /tokenize at all
    with start_sim(profile=PROFILE, seed=3) as sim:
        run = run_in_process(tmp_path, _scenario(sim.base_url, {"server_tokenize": "auto"}), out="auto").run
        assert any("no POST /tokenize" in note for note in run.manifest.notes)
        assert not (run.path / TOKEN_COUNTS).exists()
        from benchtest import write_scenario

        path = write_scenario(tmp_path, _scenario(sim.base_url, {"server_tokenize": True}), name="true.yaml")
        assert main(["run", str(path), "--out", str(tmp_path / "true"), "--quiet"]) == 1
    assert bench.load_run(tmp_path / "true").manifest.ended == "failed"


def test_worker_processes_keep_the_texts_too(tmp_path):
    """Records made in client worker processes (`load.workers`) carry their texts to the parent."""
    with start_sim(profile=PROFILE, seed=3) as sim:
        data = _scenario(sim.base_url, {"server_tokenize": True})
        data["load"]["workers"] = 2
        run = run_in_process(tmp_path, data).run
        truth = sim_truth(sim.root_url)
    ok = counted(run.requests)
    assert len(ok) == 24 and run.manifest.client.worker_count == 2
    generated = ok["server_request_id"].map(lambda rid: truth[rid]["output_tokens"]).astype(int)
    assert (ok["output_tokens_server_tokenize"].astype(int) == generated).all()
    assert (ok[TOKEN_COUNT_DIFF.key] == -UNDER).all()
