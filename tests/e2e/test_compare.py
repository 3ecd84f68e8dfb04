"""`bench compare` and bench.analysis.stats: same seed and scenario -> not significant; a 30 % slower
decode -> TPOT and E2E significantly higher. Runs against the simulator (real processes)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from benchtest import write_scenario

import bench
from bench.analysis import stats
from bench.commands.cli import main
from bench.report import compare
from bench.sim import start_sim

REPO = Path(__file__).resolve().parents[2]

# The 30 % pair: decode steps of 10 vs 13 ms, no per-sequence cost, fixed output length.
FAST = {"models": ["sim-cmp"], "decode_ms_base": 10.0, "decode_ms_per_seq": 0.0, "prefill_ms_per_token": 0.01}
SLOW = {**FAST, "decode_ms_base": 13.0}
# The same-seed pair: realistic spread, and latencies of tens of ms, so that a few ms of CPU
# contention from other processes on a shared test machine stay under compare.MIN_EFFECT.
SAME = {"models": ["sim-cmp"], "decode_ms_base": 20.0, "decode_ms_per_seq": 0.1, "prefill_ms_per_token": 0.2}


def _scenario(base_url: str, output_tokens: object) -> dict:
    # Open loop, Poisson: a closed loop with fixed lengths runs in lockstep with the decode
    # steps, and the phase it locks into differs from run to run.
    return {
        "name": "cmp", "seed": 5, "target": {"base_url": base_url},
        "requests": {"synthetic": {"prompt_tokens": {"dist": "uniform", "min": 32, "max": 256},
                                   "output_tokens": output_tokens}},
        "sampling": {"extra_body": {"ignore_eos": True}},
        # 105 measured requests: enough for a p99 verdict (compare.min_samples)
        "load": {"rate": 50, "arrival": "poisson", "max_requests": 110, "warmup": {"requests": 5}},
    }


def _run_side_by_side(root: Path, jobs: dict[str, tuple[dict, object]]) -> dict[str, Path]:
    """The runs at the same time, each against its own simulator, through the CLI.

    Side by side, the two runs of a pair see the same machine. One after the other on a shared
    2-core box, a burst of someone else's work lands in one run only: a real difference
    between the runs, which the comparison would rightly report.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with ExitStack() as stack:
        procs = {}
        for name, (profile, output_tokens) in jobs.items():
            sim = stack.enter_context(start_sim(profile=profile, seed=1))
            path = write_scenario(root, _scenario(sim.base_url, output_tokens), name=f"{name}.yaml")
            procs[name] = subprocess.Popen([sys.executable, "-m", "bench", "run", str(path), "--out", str(root / name),
                                            "--quiet", "--no-report"], env=env)
        codes = {name: proc.wait(timeout=120) for name, proc in procs.items()}
    assert set(codes.values()) == {0}, codes
    return {name: root / name for name in jobs}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    spread = {"dist": "uniform", "min": 8, "max": 40}
    root = tmp_path_factory.mktemp("cmp")
    # pair by pair: four at once on two cores would mostly measure the contention
    return {**_run_side_by_side(root, {"a": (SAME, spread), "a_again": (SAME, spread)}),
            **_run_side_by_side(root, {"fast": (FAST, 24), "slow": (SLOW, 24)})}


def _verdicts(cmp: compare.Comparison) -> dict[tuple[str, str], stats.DiffCI]:
    return {(row.metric, row.statistic): row.diffs[1] for row in cmp.rows if row.diffs[1] is not None}


def test_same_seed_and_scenario_is_not_significant(runs):
    cmp = compare.compare_runs([bench.load_run(runs["a"]), bench.load_run(runs["a_again"])], seed=1)
    diffs = _verdicts(cmp)
    assert len(diffs) == len(compare.METRICS) * len(compare.STATISTICS)
    significant = {k: (d.a, d.diff, d.low, d.high) for k, d in diffs.items() if compare.is_significant(d)}
    assert not significant, significant
    assert all(compare.verdict(d).startswith("not significant") for d in diffs.values()), \
        {k: compare.verdict(d) for k, d in diffs.items()}
    assert cmp.warnings == []


def test_slower_decode_is_significantly_higher_tpot_and_e2e(runs):
    cmp = compare.compare_runs([bench.load_run(runs["fast"]), bench.load_run(runs["slow"])], seed=1)
    diffs = _verdicts(cmp)
    for metric in ("tpot_ms", "e2e_ms"):
        for stat in compare.STATISTICS:
            d = diffs[(metric, stat)]
            assert compare.is_significant(d) and d.low > 0 and compare.verdict(d) == "higher", (metric, stat, d)
    assert 1.2 < diffs[("tpot_ms", "p50")].ratio < 1.4
    # fewer tokens per second per request: significant in the other direction
    assert compare.verdict(diffs[("output_tokens_per_s", "mean")]) == "lower"


def test_compare_is_reproducible_for_a_seed(runs):
    loaded = [bench.load_run(runs["fast"]), bench.load_run(runs["slow"])]
    first = _verdicts(compare.compare_runs(loaded, seed=7, n_resamples=300))
    again = _verdicts(compare.compare_runs(loaded, seed=7, n_resamples=300))
    assert first == again


def test_cli_compare_writes_console_md_and_self_contained_html(runs, tmp_path, capsys):
    code = main(["compare", str(runs["a"]), str(runs["a_again"]), str(runs["slow"]), "--out", str(tmp_path),
                 "--seed", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "not significant" in printed and "lower" in printed  # run "slow" decodes 13 ms steps, not 30
    assert "WARNING: scenario mismatch: slow: prompts" in printed  # fixed vs uniform output lengths
    md = (tmp_path / "compare.md").read_text()
    assert "| TPOT (ms) | p50 |" in md and "figures/compare_cdf.png" in md
    assert (tmp_path / "figures" / "compare_ladder.png").stat().st_size > 1000
    html = (tmp_path / "compare.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?://""", html, re.I)
    imgs = re.findall(r"<img[^>]*>", html)
    assert len(imgs) == 2 and all('src="data:image/png;base64,' in img for img in imgs)


def test_compare_needs_two_runs(runs, capsys):
    assert main(["compare", str(runs["a"])]) == 2
    assert "at least two" in capsys.readouterr().err


def test_mismatched_scenarios_are_warned_about(runs):
    a = bench.load_run(runs["a"])
    scenario = {**a.manifest.scenario, "load": {**a.manifest.scenario["load"], "rate": 80.0},
                "sampling": {**a.manifest.scenario["sampling"], "temperature": 0.5}}
    other = dataclasses.replace(a, path=Path("other"),
                                manifest=a.manifest.model_copy(update={"scenario": scenario, "model": "m2"}))
    warnings = compare.scenario_mismatches([a, other])
    text = "\n".join(warnings)
    assert "model 'm2' differs" in text and "rate: 50.0 vs 80.0" in text and "temperature" in text
    assert not any("prompts" in w for w in warnings)


# --- bench.analysis.stats ------------------------------------------------------------------------


def test_unpaired_bootstrap_finds_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    a = rng.lognormal(3.0, 0.4, 800)
    same = stats.bootstrap_diff(a, rng.permutation(a), seed=1)
    assert not any(d.significant for d in same.values())
    shifted = stats.bootstrap_diff(a, a * 1.2, seed=1)
    assert all(d.verdict == "higher" for d in shifted.values())
    assert shifted["mean"].low < shifted["mean"].diff < shifted["mean"].high


def test_paired_bootstrap_sees_what_unpaired_cannot():
    rng = np.random.default_rng(1)
    per_prompt = rng.lognormal(5.0, 1.0, 300)  # prompts differ a lot...
    a = per_prompt + rng.normal(0, 1, 300)
    b = per_prompt + 3 + rng.normal(0, 1, 300)  # ...the variant adds 3 to each
    assert not stats.bootstrap_diff(a, b, ("mean",), seed=2)["mean"].significant
    paired = stats.paired_bootstrap_diff(a, b, ("mean", "p50"), seed=2)
    assert paired["mean"].verdict == "higher" and 2.5 < paired["mean"].diff < 3.5
    identical = stats.paired_bootstrap_diff(a, a.copy(), seed=2)
    assert not any(d.significant for d in identical.values())


def test_stats_reject_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        stats.paired_bootstrap_diff(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="unknown statistic"):
        stats.bootstrap_diff(np.ones(3), np.ones(3), ("median",))
    empty = stats.bootstrap_diff(np.array([np.nan]), np.ones(5), ("mean",))["mean"]
    assert empty.verdict == "n/a" and not empty.significant


def test_cli_compare_at_80_columns_cuts_no_number(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    runs_ab = [runs["a"], runs["slow"]]
    assert main(["compare", *map(str, runs_ab), "--out", str(tmp_path), "--seed", "3", "--resamples", "500"]) == 0
    printed = capsys.readouterr().out
    assert "…" not in printed
    table_lines = [line for line in printed.splitlines() if line[:1] in "┃│┏┡└"]
    assert len(table_lines) > 20 and all(len(line) <= 80 for line in table_lines)
    cmp = compare.compare_runs([bench.load_run(p) for p in runs_ab], seed=3, n_resamples=500)
    for row in cmp.rows:  # every value of both runs, whole (no latency here reaches seconds)
        for value in row.values:
            assert compare.report.fmt(value) in printed, (row.label, row.statistic, value)


def test_console_tables_at_80_columns_keep_large_numbers_whole():
    from io import StringIO

    from rich.console import Console

    rows = []
    for entry in compare.METRICS:  # a saturated server: latencies of minutes
        label, metric = entry.heading, entry.key
        for stat in compare.STATISTICS:
            a = 106_123.4 if metric != "itl_ms" else 12.34
            b = a * 1.5
            diff = stats.DiffCI(stat, a, b, b - a, (b - a) * 0.8, (b - a) * 1.2, 0.99, 1000, 1000)
            rows.append(compare.Row(label, metric, stat, [a, b], [None, diff]))
    rows.append(compare.Row("requests/s (run)", "requests_per_s", "run", [0.35, 0.5], [None, None]))
    cmp = compare.Comparison(["run-20261130-000001", "run-20261130-000002-llama-cpp"], rows, [], 0, 2000)
    out = StringIO()
    console = Console(file=out, width=80)
    for table in compare.console_tables(cmp, 80):
        console.print(table)
    text = out.getvalue()
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│ ") and
             line.split("│")[1].strip()}
    assert {"TTFT s", "ITL ms", "E2E s", "tok/s/req", "req/s (run)"} <= set(lines)
    for cell in ("106.1", "159.2", "+53.06", "[42.45, 63.67]"):  # 106,123.4 ms and 1.5x in seconds
        assert cell in lines["TTFT s"]
    for cell in ("106,123", "159,185", "+53,062"):  # tokens/s stay tokens/s
        assert cell in lines["tok/s/req"]
    assert "12.34" in lines["ITL ms"] and "18.51" in lines["ITL ms"]
