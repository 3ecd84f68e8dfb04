"""`bench compare --min-effect`: a real 20 % slower decode (TPOT's interval on this shared
machine is several % wide, so a smaller true difference would not be clear of 0 every time)
is "higher" under the default 5 % floor and under 10 %, "not significant (< 30%)" under 30 %,
and the JSON states the floor; a floor outside [0, 1) is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from benchtest import write_scenario

import bench
from bench.commands.cli import main

PROFILES = Path(bench.__file__).resolve().parent / "sim" / "profiles"


def _run(tmp: Path, name: str, profile: str) -> Path:
    path = write_scenario(tmp, {
        "name": name, "seed": 3, "target": {"sim_profile": profile},
        "requests": {"synthetic": {"prompt_tokens": 16, "output_tokens": 24}},
        "sampling": {"extra_body": {"ignore_eos": True}},
        "load": {"concurrency": 4, "max_requests": 120, "warmup": {"requests": 4}},
    }, name=f"{name}.yaml")
    assert main(["run", str(path), "--out", str(tmp / name), "--quiet", "--no-report"]) == 0
    return tmp / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("min-effect")
    slower = yaml.safe_load((PROFILES / "default.yaml").read_text(encoding="utf-8"))
    slower["decode_ms_base"] *= 1.2
    slower["decode_ms_per_seq"] *= 1.2
    (tmp / "slower-decode.yaml").write_text(yaml.safe_dump(slower))
    return tmp, _run(tmp, "base", "default"), _run(tmp, "slower", str(tmp / "slower-decode.yaml"))


def _tpot_p50(capsys, tmp: Path, base: Path, other: Path, *flags: str) -> tuple[dict, float, dict]:
    """(the TPOT p50 cell's diff, the baseline's value, the whole JSON)."""
    assert main(["compare", str(base), str(other), "--json", "--out", str(tmp / "cmp"), *flags]) == 0
    out = json.loads(capsys.readouterr().out)
    row = next(r for r in out["rows"] if r["metric"] == "tpot_ms" and r["statistic"] == "p50")
    return row["diffs"][1], row["values"][0], out


def test_the_floor_decides_a_real_difference(runs, capsys):
    tmp, base, slower = runs
    cell, baseline, out = _tpot_p50(capsys, tmp, base, slower)
    assert out["min_effect"] == 0.05
    assert 0.12 < cell["diff"] / baseline < 0.28 and cell["low"] > 0  # about +20 %, clear of 0
    assert cell["verdict"] == "higher"
    assert _tpot_p50(capsys, tmp, base, slower, "--min-effect", "0.1")[0]["verdict"] == "higher"
    cell, _, out = _tpot_p50(capsys, tmp, base, slower, "--min-effect", "0.3")
    assert out["min_effect"] == 0.3 and cell["verdict"] == "not significant (< 30%)"


@pytest.mark.parametrize("value", ["1", "-0.1", "5"])
def test_a_floor_that_is_not_a_share_is_refused(runs, capsys, value):
    tmp, base, slower = runs
    assert main(["compare", str(base), str(slower), "--min-effect", value, "--out", str(tmp / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bench: error: --min-effect: {float(value)} is not a share between 0 and 1"]
