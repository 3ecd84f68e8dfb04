"""Prefix cache end to end: the simulator's prefix cache reports `cached_tokens` in the
usage, bench records them per request and summarises the run's cache-hit share, which
matches what the workload's shared prefixes predict; a run started on a cache an earlier
run left warm is warned about."""

from __future__ import annotations

import pytest
from benchtest import run_in_process

from bench.analysis import validity
from bench.metrics.catalogue import CACHED_TOKENS, counted
from bench.sim import start_sim

BLOCK = 16  # the profile's prefix_block_tokens
PREFIX = 512  # shared prefix tokens: whole blocks, whatever the chat template adds after them
GROUPS = 2
PROFILE = {"models": ["sim-cache"], "prefix_cache": True, "prefix_block_tokens": BLOCK, "decode_ms_base": 2.0,
           "decode_ms_per_seq": 0.0, "prefill_ms_per_token": 0.001}


def _scenario(base_url: str, seed: int) -> dict:
    return {
        "name": "cache", "seed": seed, "target": {"base_url": base_url},
        "requests": {"synthetic": {"prompt_tokens": 64, "output_tokens": 4},
                     "shared_prefix": {"tokens": PREFIX, "groups": GROUPS}},
        "sampling": {"extra_body": {"ignore_eos": True}},
        # one at a time: every request but the first of each group finds its group's prefix cached
        "load": {"concurrency": 1, "max_requests": 40, "warmup": {"requests": 0}},
    }


def test_the_cache_hit_share_is_the_one_the_shared_prefixes_predict(tmp_path):
    with start_sim(profile=PROFILE, seed=1) as sim:
        run = run_in_process(tmp_path, _scenario(sim.base_url, seed=1), out="cold").run
        ok = counted(run.requests)
        prompt = ok["prompt_tokens"].astype(float)
        hits = len(ok) - GROUPS  # the first request of each group finds nothing
        predicted = hits * PREFIX / prompt.sum()
        share = run.summary.throughput.prefix_cache_hit_share
        print(f"cache-hit share {share:.4f}, predicted {predicted:.4f}")
        assert share == pytest.approx(predicted, rel=0.05)
        assert (ok[CACHED_TOKENS.key].fillna(0) > 0).sum() == hits
        assert run.summary.metric(CACHED_TOKENS).max >= PREFIX
        assert "warm_cache" not in [w.code for w in validity.check(run)]
        # the same prompts again, on the cache the first run left warm
        warm = run_in_process(tmp_path, _scenario(sim.base_url, seed=1), out="warm").run
        codes = [w.code for w in validity.check(warm)]
        assert "warm_cache" in codes
        assert warm.summary.throughput.prefix_cache_hit_share > share
