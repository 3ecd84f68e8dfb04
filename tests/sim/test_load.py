"""Closed-loop load: latency rises with concurrency and throughput saturates, as the
profile's model predicts (measured on the server's ground truth)."""

from __future__ import annotations

import pytest

from bench.sim import load_profile, predict, start_sim
from tests.sim.loadgen import run_closed_loop

PROMPT, OUTPUT = 100, 64


def test_latency_rises_and_throughput_saturates() -> None:
    profile = load_profile("default")
    measured, predicted = {}, {}
    with start_sim("default", seed=1) as sim:
        for c in (1, 8, 64, 128):
            measured[c] = run_closed_loop(sim, c, 2.5, PROMPT, OUTPUT, stagger_s=0.5)
            # The loader prefixes two words to each prompt.
            predicted[c] = predict(profile, c, PROMPT + 2, OUTPUT)
    m, p = measured, predicted
    report = {c: (m[c], p[c]) for c in m}
    # Direction: TTFT and ITL rise with concurrency; tokens/s rises, then saturates.
    assert m[1]["ttft_ms"] < m[8]["ttft_ms"] < m[64]["ttft_ms"] < m[128]["ttft_ms"], report
    assert m[1]["itl_ms"] < m[8]["itl_ms"] < m[64]["itl_ms"], report
    assert m[1]["tokens_per_s"] < m[8]["tokens_per_s"] < m[64]["tokens_per_s"], report
    assert m[64]["tokens_per_s"] / m[8]["tokens_per_s"] < 0.6 * 64 / 8, report  # sub-linear
    assert m[128]["tokens_per_s"] < 1.2 * m[64]["tokens_per_s"], report  # batch full: flat
    assert m[128]["ttft_ms"] > 10 * m[64]["ttft_ms"], report  # ... and queueing instead
    # Size: within 30 % of the profile's mean-value model.
    for c in (1, 8, 64):
        assert m[c]["itl_ms"] == pytest.approx(p[c]["itl_ms"], rel=0.3), report
        assert m[c]["ttft_ms"] == pytest.approx(p[c]["ttft_ms"], rel=0.3), report
        assert m[c]["tokens_per_s"] == pytest.approx(p[c]["tokens_per_s"], rel=0.3), report
    assert m[128]["ttft_ms"] == pytest.approx(p[128]["ttft_ms"], rel=0.3), report
    # Single stream: ITL is exactly one decode step of a batch of one.
    assert m[1]["itl_p50_ms"] == pytest.approx(
        profile.decode_ms_base + profile.decode_ms_per_seq, abs=0.5), report


def test_kv_budget_limits_the_batch() -> None:
    # Room for 4 sequences of (100 prompt + 64 output) tokens: the rest must wait.
    profile = {"models": ["m"], "kv_cache_tokens": 4 * 170, "max_num_seqs": 64,
               "decode_ms_base": 5, "decode_ms_per_seq": 0, "prefill_ms_per_token": 0}
    with start_sim(profile) as sim:
        m = run_closed_loop(sim, 16, 2.0, PROMPT, OUTPUT, model="m")
    p = predict(load_profile(profile), 16, PROMPT + 2, OUTPUT)
    assert p["batch"] == 4
    assert m["tokens_per_s"] == pytest.approx(p["tokens_per_s"], rel=0.3)
    assert m["tokens_per_s"] < 4 * 1000 / 5 * 1.1  # at most 4 streams at 5 ms a step
