"""The issue's acceptance for the summary's percentile intervals (a calibration check):
does the p99 TTFT range of a 64-stream simulator run hold the p99 of a second run with
another seed, in at least 9 of 10 repeats? Marker `calibration`: run by hand
(`python -m pytest -m calibration`), not in CI (ten pairs of runs; a statistical check).

The range checked is the summary's re-run range (`precision.reruns`), the interval built to
answer this question. A 95 % confidence interval of one run's p99 (`precision.intervals`,
printed too) cannot: it is about the server's p99, and a correct one holds another run's
estimate only ~83 % of the time (both runs vary: tests/unit/analysis/test_rerun_range.py),
so 9 of 10 would pass by luck about half the time. Neither interval knows what changes
between runs outside the sample (other load on the machine): on a busy machine the p99 of
a short run is set by stalls that come and go, and both hold far less often."""

from __future__ import annotations

import urllib.request

import pytest
from benchtest import run_in_process

from bench.metrics.catalogue import TTFT
from bench.sim import start_sim

# Short answers so that a few seconds give hundreds of requests (a p99 needs 100). The
# token budget of a step takes a whole burst of arrivals: with the default 2,048, a burst
# that spills into a second step gives a dozen requests one TTFT, and the p99 of a 4 s run
# is then decided by whether one such burst happened (a value no interval drawn from a run
# without it can reach: 6 of 10 repeats held).
PROFILE = {"models": ["sim-ci"], "max_num_seqs": 64, "decode_ms_base": 8.0, "decode_ms_per_seq": 0.25,
           "prefill_ms_per_token": 0.02, "prefix_cache": False, "max_num_batched_tokens": 16384}


# Long enough that the p99 is a percentile (~4,600 TTFTs, ~46 above it) rather than the
# largest of a few groups of requests sent in one step, as in a 4 s run (~550 TTFTs): the
# TTFTs above the p99 come in bursts (a dozen requests admitted in one step), 2-7 of them in
# 16 s, and the re-run range held 67 % of 380 pairs of 4 s runs, 89 % of 16 s runs.
DURATION_S = 32


def _run(tmp_path, sim, seed: int, out: str):
    """One run, after clearing the simulator's ground-truth records: every run meets the
    simulator in the same state (it keeps the last 20,000 requests' records, which the
    collector otherwise walks through a growing heap)."""
    urllib.request.urlopen(urllib.request.Request(f"{sim.root_url}/sim/requests", method="DELETE"), timeout=10).read()
    return run_in_process(tmp_path, _scenario(sim.base_url, seed), out=out).run.summary


def _scenario(base_url: str, seed: int) -> dict:
    return {
        "name": "ci", "seed": seed, "target": {"base_url": base_url},
        "requests": {"synthetic": {"prompt_tokens": {"dist": "uniform", "min": 32, "max": 256},
                                   "output_tokens": {"dist": "uniform", "min": 4, "max": 16}}},
        "sampling": {"extra_body": {"ignore_eos": True}},
        "load": {"concurrency": 64, "max_requests": 100_000, "duration": DURATION_S, "warmup": {"requests": 64}},
    }


@pytest.mark.calibration  # a statistical check of ten pairs of runs: run by hand, not in CI
def test_the_p99_ttft_interval_holds_the_p99_of_another_seed(tmp_path):
    held = []
    with start_sim(profile=PROFILE, seed=3) as sim:
        for repeat in range(10):
            first = _run(tmp_path, sim, 2 * repeat, f"a{repeat}")
            second = _run(tmp_path, sim, 2 * repeat + 1, f"b{repeat}")
            assert first.precision is not None and first.metric(TTFT).count >= 1000
            interval, rerun = first.precision.interval(TTFT, "p99"), first.precision.rerun(TTFT, "p99")
            assert interval is not None and rerun is not None
            p99 = second.metric(TTFT).p99
            assert p99 is not None
            held.append(rerun[0] <= p99 <= rerun[1])
            print(f"repeat {repeat}: p99 {first.metric(TTFT).p99:.2f} re-run range {rerun[0]:.2f}-{rerun[1]:.2f} "
                  f"(CI {interval[0]:.2f}-{interval[1]:.2f}), other seed {p99:.2f} "
                  f"(n {first.metric(TTFT).count}, {second.metric(TTFT).count}; tail in "
                  f"{first.precision.tail_blocks.get(TTFT.summary_key or '', {}).get('p99')} blocks): "
                  f"{'held' if held[-1] else 'missed'}{'' if interval[0] <= p99 <= interval[1] else ' (CI missed)'}")
    assert sum(held) >= 9, held
