"""`bench compare --fail-on`: exit 3 for a 30 % slower decode, 0 for a same-seed rerun; the
gate's grammar; `--json` for machines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from benchtest import write_scenario

import bench
from bench.commands.cli import main
from bench.errors import BenchInputError
from bench.metrics.catalogue import OUTPUT_TOKENS_PER_S, TTFT
from bench.report.gate import parse_fail_on

PROFILES = Path(bench.__file__).resolve().parent / "sim" / "profiles"
GATE = "tpot_ms.p50:+10%,output_tokens_per_s:-20%"


def _run(tmp: Path, name: str, profile: str) -> Path:
    path = write_scenario(tmp, {
        "name": name, "seed": 3, "target": {"sim_profile": profile},
        "requests": {"synthetic": {"prompt_tokens": 16, "output_tokens": 24}},
        "sampling": {"extra_body": {"ignore_eos": True}},
        "load": {"concurrency": 4, "max_requests": 96, "warmup": {"requests": 4}},
    }, name=f"{name}.yaml")
    assert main(["run", str(path), "--out", str(tmp / name), "--quiet", "--no-report"]) == 0
    return tmp / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    slow = yaml.safe_load((PROFILES / "default.yaml").read_text(encoding="utf-8"))
    slow["decode_ms_base"] *= 1.3
    slow["decode_ms_per_seq"] *= 1.3
    (tmp / "slow-decode.yaml").write_text(yaml.safe_dump(slow))
    return {"base": _run(tmp, "base", "default"), "again": _run(tmp, "again", "default"),
            "slow": _run(tmp, "slow", str(tmp / "slow-decode.yaml")), "tmp": tmp}


def test_a_30_percent_slower_decode_fails_the_gate(runs, capsys):
    code = main(["compare", str(runs["base"]), str(runs["slow"]), "--fail-on", GATE, "--json",
                 "--out", str(runs["tmp"] / "cmp-slow")])
    out = json.loads(capsys.readouterr().out)
    assert code == 3
    assert out["gate"]["passed"] is False
    [tpot] = [b for b in out["gate"]["breaches"] if b["threshold"] == "tpot_ms.p50:+10%"]
    assert 0.2 < tpot["change"] < 0.4  # decode steps 30 % longer: TPOT about 30 % higher
    row = next(r for r in out["rows"] if r["metric"] == "tpot_ms" and r["statistic"] == "p50")
    assert row["diffs"][1]["verdict"] == "higher" and row["diffs"][1]["low"] > 0


def test_a_same_seed_rerun_passes_the_gate(runs, capsys):
    code = main(["compare", str(runs["base"]), str(runs["again"]), "--fail-on", GATE,
                 "--out", str(runs["tmp"] / "cmp-again")])
    out = capsys.readouterr().out
    assert code == 0 and "REGRESSION" not in out


def test_the_gate_reads_its_grammar():
    ttft, tokens = parse_fail_on("ttft_ms.p99:+10%, output_tokens_per_s:-5%")
    assert (ttft.metric, ttft.statistic, ttft.limit) == (TTFT, "p99", 0.10)
    assert (tokens.metric, tokens.statistic, tokens.limit) == (OUTPUT_TOKENS_PER_S, "run", -0.05)


@pytest.mark.parametrize(("spec", "says"), [
    ("ttft_ms.p99:-10%", "higher ttft_ms is worse; write +10%"),
    ("output_tokens_per_s:+5%", "lower output_tokens_per_s is worse; write -5%"),
    ("ttft_ms:+10%", "write it as ttft_ms.STAT"),
    ("latency.p99:+10%", "latency is not compared"),
    ("ttft_ms.p99:10", "expected KEY.STAT:+N%"),
])
def test_a_bad_gate_is_one_line(spec, says):
    with pytest.raises(BenchInputError, match=None) as err:
        parse_fail_on(spec)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_bad_gate_exits_2_before_loading_runs(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--fail-on", "ttft_ms.p99:-1%"]) == 2
    assert "--fail-on" in capsys.readouterr().err
