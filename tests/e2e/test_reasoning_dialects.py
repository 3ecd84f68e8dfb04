"""Reasoning phases and metric dialects end to end: bench against the simulator's reasoning
profile, the phase figures within 5 % of the profile's prediction, the report's tables and
`bench report RUN --as TOOL`."""

from __future__ import annotations

import math

import pytest
from benchtest import run_in_process

from bench.commands.cli import main
from bench.metrics.catalogue import ANSWER_TPOT, REASONING_TIME, REASONING_TOKENS, TTFT, TTFT_ANSWER, TTFT_REASONING
from bench.report.console import summary_lines
from bench.sim import start_sim
from bench.sim.profile import load_profile, predict_reasoning

OUTPUT, PROMPT = 32, 16
# One stream at a time: no batch-mates, every step is decode_ms_base long (100 ms: a few ms
# of client and loopback time stay well under 5 % of TTFT), so the phases are whole numbers
# of steps; 2 tokens per chunk, 16 of the 32 tokens reasoning.
PROFILE = {"name": "reasoner-e2e", "models": ["sim-reasoner"], "prefill_ms_per_token": 0.0,
           "decode_ms_base": 100.0, "decode_ms_per_seq": 0.0, "tokens_per_chunk": 2, "reasoning_tokens": 16,
           "output_len": {"dist": "fixed", "mean": 1000, "max": 4096}}


@pytest.fixture(scope="module")
def reasoning_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("reasoning")
    with start_sim(PROFILE, seed=3) as sim:
        result = run_in_process(directory, {
            "name": "reasoner", "seed": 1, "target": {"base_url": sim.base_url},
            "requests": {"synthetic": {"prompt_tokens": PROMPT, "output_tokens": OUTPUT}},
            "sampling": {"extra_body": {"ignore_eos": True}},
            "load": {"concurrency": 1, "max_requests": 6, "warmup": {"requests": 1}},
        })
    return result.run


def test_reasoning_phases_match_the_profile_prediction(reasoning_run):
    predicted = predict_reasoning(load_profile(PROFILE), 1, PROMPT, OUTPUT)
    summary = reasoning_run.summary
    assert summary.requests.ok == 5  # 6 sent, the first as warmup
    for metric in (TTFT_REASONING, TTFT_ANSWER, REASONING_TIME, REASONING_TOKENS, ANSWER_TPOT):
        got = summary.metric(metric).p50
        want = predicted[metric.key]
        assert got is not None and math.isfinite(want)
        assert got == pytest.approx(want, rel=0.05), (metric.key, got, want)
    # TTFT keeps its meaning: the first output of any kind, here the first reasoning chunk
    assert summary.metric(TTFT).p50 == pytest.approx(summary.metric(TTFT_REASONING).p50)
    # the usage said how many tokens were reasoning: exactly the profile's, not the 8 chunks
    requests = reasoning_run.requests
    assert set(requests["usage_reasoning_tokens"].dropna().astype(int)) == {16}
    assert any(line.startswith("reasoning p50: ") for line in summary_lines(summary))  # the console shows them


def test_the_report_has_the_dialect_and_reasoning_tables(reasoning_run, capsys):
    assert main(["report", str(reasoning_run.path), "--format", "html"]) == 0
    html = (reasoning_run.path / "report.html").read_text(encoding="utf-8")
    for title in ("Reasoning phases", "Metric dialects: this run as each tool would report it",
                  "Metric dialects: definitions", "vLLM bench serve", "inference-perf", "LLMPerf"):
        assert title in html, title


def test_report_as_a_tool_prints_its_definitions_and_figures(reasoning_run, capsys):
    capsys.readouterr()
    assert main(["report", str(reasoning_run.path), "--as", "sglang"]) == 0
    text = capsys.readouterr().out
    assert "SGLang bench_serving definitions" in text and "delta.content" in text
    assert "requests counted: 5" in text
    # SGLang's TTFT waits for content: the reasoning phase (8 steps of 100 ms) is inside it
    ttft_line = next(line for line in text.splitlines() if line.startswith(TTFT.heading))
    p50 = float(ttft_line.split()[4])  # "TTFT (ms)", count, mean, p50, ...
    answer = reasoning_run.summary.metric(TTFT_ANSWER).p50
    assert p50 == pytest.approx(answer, rel=0.01)


def test_report_as_an_unknown_tool_is_bad_input(reasoning_run, capsys):
    assert main(["report", str(reasoning_run.path), "--as", "genai-perf"]) == 2
    err = capsys.readouterr().err
    assert "--as" in err and "genai-perf" in err and "Traceback" not in err


def test_compare_adds_the_reasoning_phases_only_when_a_run_reasoned(reasoning_run):
    from test_validity import make_run

    from bench.report import compare
    from bench.report.gate import check_gate, parse_fail_on

    phases = {TTFT_ANSWER.key, REASONING_TIME.key, ANSWER_TPOT.key}
    gate = parse_fail_on("reasoning_ms.p50:+5%,answer_tpot_ms.p99:+5%")
    cmp = compare.compare_runs([reasoning_run, reasoning_run], seed=1, n_resamples=500)
    assert phases <= {row.metric for row in cmp.rows}
    assert cmp.n_metrics == len(compare.METRICS) + len(phases)
    assert compare.cell_confidence(cmp.n_metrics) > compare.cell_confidence()  # a larger family
    assert check_gate(cmp, gate) == []  # a run against itself
    plain = compare.compare_runs([make_run(n=60), make_run(n=60)], seed=1, n_resamples=500)
    assert not phases & {row.metric for row in plain.rows} and plain.n_metrics == len(compare.METRICS)
    assert check_gate(plain, gate) == []  # no run reasoned: the thresholds have nothing to judge
